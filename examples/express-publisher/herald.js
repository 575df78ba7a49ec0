// A Herald publisher in a few lines: POST JSON to the hub with the API key, retry what is safe
// to retry. Every publish carries an id, so a retry after a lost answer never delivers twice
// (the hub answers the repeat with `"duplicate": true`).

const RETRY_STATUSES = new Set([502, 503, 504]);

export function createHerald({
  url = process.env.HERALD_URL ?? "http://127.0.0.1:8080",
  apiKey = process.env.HERALD_API_KEY,
} = {}) {
  async function post(path, body, attempts = 3) {
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch(new URL(path, url), {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          },
          body: JSON.stringify(body),
        });
      } catch (error) {
        if (attempt < attempts) continue; // the network failed: same id, so retrying is safe
        throw error;
      }
      if (response.ok) return response.json(); // { id, recipients, duplicate? }
      if (RETRY_STATUSES.has(response.status) && attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        continue;
      }
      const { error } = await response.json().catch(() => ({ error: {} }));
      throw Object.assign(
        new Error(
          `herald: ${response.status} ${error?.code}: ${error?.message}`,
        ),
        { status: response.status, code: error?.code },
      );
    }
  }
  return {
    /** Every subscriber of `channel`. */
    toChannel: (channel, { event, data, id }) =>
      post(`/api/channels/${encodeURIComponent(channel)}/events`, {
        event,
        data,
        id,
      }),
    /** One user (every stream on the channel `user:{userId}`). */
    toUser: (userId, { event, data, id }) =>
      post(`/api/users/${encodeURIComponent(userId)}/events`, {
        event,
        data,
        id,
      }),
  };
}
