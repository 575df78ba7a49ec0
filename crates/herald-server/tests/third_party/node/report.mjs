// What every client script prints: one JSON object per line on standard output, read by
// crates/herald-server/tests/third_party_clients.rs. `t` is the wall clock in milliseconds.
//   {"t":…,"kind":"open"}                                   a connection opened
//   {"t":…,"kind":"event","type":…,"id":…,"data":…,"retry":…}  an event handed to the application
//   {"t":…,"kind":"error","message":…}                      the library reported an error

export function report(kind, fields = {}) {
  process.stdout.write(JSON.stringify({ t: Date.now(), kind, ...fields }) + "\n");
}

// The stream URL, then the event names the application listens to (for clients that dispatch by
// name): `node client.mjs URL connected greeting note`.
export function args() {
  const [url, ...names] = process.argv.slice(2);
  if (!url) {
    process.stderr.write("usage: node client.mjs STREAM_URL [EVENT_NAME...]\n");
    process.exit(2);
  }
  return { url, names };
}
