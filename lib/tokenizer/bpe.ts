// Byte-pair merging of one word by merge rank. Same result as the reference
// loop (repeatedly merge every occurrence, left to right, of the pair with
// the lowest rank) but with a heap over a linked list, so that a hostile
// 100 000-letter "word" costs n log n instead of n².

/** Ranks keyed by `left + ' ' + right`; lower merges first. */
export type MergeRanks = ReadonlyMap<string, number>;

interface Candidate {
  rank: number;
  /** Index of the left symbol; symbols keep their first index, so this orders candidates left to right. */
  left: number;
  right: number;
  /** The two symbols as they were when the candidate was made, to spot stale entries. */
  leftSym: string;
  rightSym: string;
}

const before = (a: Candidate, b: Candidate) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left);

class Heap {
  private items: Candidate[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): Candidate {
    return this.items[0];
  }
  push(c: Candidate): void {
    const a = this.items;
    a.push(c);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): Candidate {
    const a = this.items;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l], a[m])) m = l;
        if (r < a.length && before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Splits `symbols` (the word's characters, the last already carrying its
 * end-of-word marker) into BPE tokens.
 */
export function bpeMerge(symbols: string[], ranks: MergeRanks): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const sym = symbols.slice();
  const next = Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
  const prev = Array.from({ length: n }, (_, i) => i - 1);
  const alive = new Array<boolean>(n).fill(true);
  const heap = new Heap();
  const candidate = (l: number, r: number): Candidate | undefined => {
    const rank = ranks.get(sym[l] + ' ' + sym[r]);
    return rank === undefined ? undefined : { rank, left: l, right: r, leftSym: sym[l], rightSym: sym[r] };
  };
  for (let i = 0; i + 1 < n; i++) {
    const c = candidate(i, i + 1);
    if (c) heap.push(c);
  }
  // Pairs made by a merge join the heap only once every occurrence of the
  // current rank is done, as in the reference, where each pass merges one pair.
  let pending: Candidate[] = [];
  while (heap.size > 0) {
    const c = heap.pop();
    const stale = !alive[c.left] || !alive[c.right] || next[c.left] !== c.right || sym[c.left] !== c.leftSym || sym[c.right] !== c.rightSym;
    if (!stale) {
      sym[c.left] = c.leftSym + c.rightSym;
      alive[c.right] = false;
      const after = next[c.right];
      next[c.left] = after;
      if (after !== -1) prev[after] = c.left;
      const p = prev[c.left];
      const fromLeft = p !== -1 ? candidate(p, c.left) : undefined;
      const toRight = after !== -1 ? candidate(c.left, after) : undefined;
      if (fromLeft) pending.push(fromLeft);
      if (toRight) pending.push(toRight);
    }
    if (pending.length > 0 && (heap.size === 0 || heap.peek().rank !== c.rank)) {
      for (const q of pending) heap.push(q);
      pending = [];
    }
  }
  const out: string[] = [];
  for (let i = 0; i !== -1; i = next[i]) out.push(sym[i]);
  return out;
}
