/**
 * Listener lists by key. Owns calling listeners; never lets one listener's exception reach the
 * caller or the other listeners (it is rethrown on its own task, so it still shows in the console).
 */

export type Listener<T> = (value: T) => void;

export class Emitter {
  private readonly listeners = new Map<string, Set<Listener<never>>>();

  /** Adds a listener; returns the function that removes it. */
  listen(key: string, listener: Listener<never>): () => void {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(listener);
    return () => set!.delete(listener);
  }

  /** Calls every listener of `key` with `value`. */
  emit(key: string, value: unknown): void {
    for (const listener of [...(this.listeners.get(key) ?? [])]) {
      try {
        (listener as Listener<unknown>)(value);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
