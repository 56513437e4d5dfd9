// GPT-2's reversible map between the 256 byte values and 256 printable
// unicode characters, so that BPE can work on strings with no whitespace or
// control characters in them. CLIP uses the same table.

function buildTable(): string[] {
  // Bytes that are already visible characters map to themselves; the rest are
  // moved, in order, to code points 256, 257, ...
  const visible = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table = new Array<string>(256);
  let moved = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(visible(b) ? b : 256 + moved++);
  return table;
}

/** byteToChar[b]: the character standing for byte b. */
export const byteToChar: readonly string[] = buildTable();

/** The inverse of byteToChar. */
export const charToByte: ReadonlyMap<string, number> = new Map(byteToChar.map((c, b) => [c, b]));

/**
 * The 256 characters in the order CLIP's vocabulary lists them: first the
 * visible bytes in byte order, then the moved ones.
 */
export const vocabOrder: readonly string[] = [
  ...byteToChar.filter((c) => c.codePointAt(0)! < 256),
  ...byteToChar.filter((c) => c.codePointAt(0)! >= 256),
];

const encoder = new TextEncoder();

/** A string as its UTF-8 bytes, each written as its table character. */
export function toByteChars(text: string): string {
  let out = '';
  for (const b of encoder.encode(text)) out += byteToChar[b];
  return out;
}
