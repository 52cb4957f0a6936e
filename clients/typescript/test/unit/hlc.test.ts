import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { compareHlc, formatHlc, HLC_ZERO, parseHlc, tickHlc, type HlcState } from "../../src/hlc.js";

const CLIENT = "client-abcdef12";

test("hlc: every tick is strictly after the last, whatever the wall clock does (jumps back, stalls)", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 4_102_444_800_000 }), { minLength: 1, maxLength: 300 }), (walls) => {
      let state: HlcState = HLC_ZERO;
      for (const wall of walls) {
        const next = tickHlc(state, wall);
        assert.ok(compareHlc(next, state) > 0);
        assert.ok(next.ms >= wall || next.ms >= state.ms);
        state = next;
      }
    }),
    { numRuns: 300 },
  );
});

test("hlc: string order of stamps is clock order (fixed width), and stamps parse back", () => {
  const state = fc.record({ ms: fc.integer({ min: 0, max: 9_999_999_999_999 }), counter: fc.integer({ min: 0, max: 0xffff }) });
  fc.assert(
    fc.property(state, state, (a, b) => {
      const sa = formatHlc(a, CLIENT);
      const sb = formatHlc(b, CLIENT);
      assert.equal(Math.sign(sa < sb ? -1 : sa > sb ? 1 : 0), Math.sign(compareHlc(a, b)));
      assert.deepEqual(parseHlc(sa), { ...a, clientId: CLIENT });
      assert.match(sa, /^[0-9]{13}-[0-9a-f]{4}-[A-Za-z0-9_-]{8,128}$/);
    }),
    { numRuns: 500 },
  );
});

test("hlc: 65,536 stamps in one millisecond borrow the next millisecond instead of wrapping", () => {
  const next = tickHlc({ ms: 1_700_000_000_000, counter: 0xffff }, 1_700_000_000_000);
  assert.deepEqual(next, { ms: 1_700_000_000_001, counter: 0 });
});
