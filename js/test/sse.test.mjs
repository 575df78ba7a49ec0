// The parser and the backoff arithmetic, in Node: the WHATWG line rules on text split anywhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser, backoffDelay } from "../dist/index.js";

function parseInChunks(text, size) {
  const messages = [];
  const retries = [];
  const parser = new SseParser(
    (m) => messages.push(m),
    (ms) => retries.push(ms),
  );
  for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
  return { messages, retries };
}

test("every line ending and every split point gives the same events", () => {
  const wire =
    '\uFEFFretry: 3000\n\nevent: connected\ndata: {"resumed":false}\n\n: heartbeat\n\n' +
    "id: e-1\r\nevent: created\r\ndata: line one\r\ndata:line two\r\n\r\n" +
    "id: e-2\rdata: third\r\r";
  for (let size = 1; size <= wire.length; size++) {
    const { messages, retries } = parseInChunks(wire, size);
    assert.deepEqual(retries, [3000], `split every ${size}`);
    assert.deepEqual(
      messages.map((m) => [m.type, m.data, m.lastEventId, m.hasId]),
      [
        ["connected", '{"resumed":false}', "", false],
        ["created", "line one\nline two", "e-1", true],
        ["message", "third", "e-2", true],
      ],
      `split every ${size}`,
    );
  }
});

test("retry, id and data on the connected block (the wire with an id on connected)", () => {
  const { messages, retries } = parseInChunks("retry: 300\nid: ep-0\nevent: connected\ndata: {}\n\n", 7);
  assert.deepEqual(retries, [300]);
  assert.equal(messages[0].lastEventId, "ep-0");
  assert.equal(messages[0].hasId, true);
});

test("an event without id keeps the previous id; a bad retry or an id with NUL is ignored", () => {
  const { messages, retries } = parseInChunks("id: a\ndata: 1\n\nretry: 1x\ndata: 2\n\nid: b\0c\ndata: 3\n\n", 5);
  assert.deepEqual(retries, []);
  assert.deepEqual(
    messages.map((m) => [m.data, m.lastEventId, m.hasId]),
    [
      ["1", "a", true],
      ["2", "a", false],
      ["3", "a", false],
    ],
  );
});

test("backoff grows, stays within half and all of its cap, and never passes the maximum", () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(
    backoffDelay(0, options, () => 0),
    50,
  );
  assert.equal(
    backoffDelay(0, options, () => 1),
    100,
  );
  assert.equal(
    backoffDelay(3, options, () => 1),
    800,
  );
  assert.equal(
    backoffDelay(10, options, () => 1),
    1000,
  );
  assert.equal(
    backoffDelay(10, options, () => 0),
    500,
  );
});
