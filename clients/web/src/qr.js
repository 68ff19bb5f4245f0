// A small QR code encoder (ISO/IEC 18004) for invite links: byte mode, error correction
// level M, versions 1 to 3 (up to 42 bytes: a `bankhub://contact/<code>` link is 34), one
// Reed-Solomon block, mask pattern 0. No dependencies, no DOM: qrMatrix gives the modules;
// qrSvgPath a path for an inline <svg> (the app draws it with createElementNS).

const CAPACITY = [0, 16, 28, 44]; // data codewords of versions 1..3 at level M
const EC_CODEWORDS = [0, 10, 16, 26];

/** Multiply in GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1. @param {number} x @param {number} y */
function gfMul(x, y) {
  let z = 0;
  for (let i = 7; i >= 0; i -= 1) {
    z = (z << 1) ^ ((z >>> 7) * 0x11d);
    z ^= ((y >>> i) & 1) * x;
  }
  return z & 0xff;
}

/** The Reed-Solomon generator polynomial of `degree` (leading 1 dropped). @param {number} degree */
function rsDivisor(degree) {
  const result = new Array(degree).fill(0);
  result[degree - 1] = 1;
  let root = 1;
  for (let i = 0; i < degree; i += 1) {
    for (let j = 0; j < degree; j += 1) {
      result[j] = gfMul(result[j], root);
      if (j + 1 < degree) result[j] ^= result[j + 1];
    }
    root = gfMul(root, 0x02);
  }
  return result;
}

/** The error correction codewords of `data`. @param {number[]} data @param {number[]} divisor */
function rsRemainder(data, divisor) {
  const result = divisor.map(() => 0);
  for (const b of data) {
    const factor = b ^ /** @type {number} */ (result.shift());
    result.push(0);
    divisor.forEach((coef, i) => {
      result[i] ^= gfMul(coef, factor);
    });
  }
  return result;
}

/**
 * The QR code of `text` (UTF-8) as rows of modules (true: dark), without the quiet zone.
 * Throws RangeError when the text is over 42 bytes.
 * @param {string} text @returns {boolean[][]}
 */
export function qrMatrix(text) {
  const bytes = Array.from(new TextEncoder().encode(text));
  const version = [1, 2, 3].find((v) => 12 + bytes.length * 8 <= CAPACITY[v] * 8);
  if (version === undefined) throw new RangeError("text too long for this QR encoder (42 bytes at most)");
  // the data bits: byte mode, 8-bit length, the bytes, a terminator, padding
  /** @type {number[]} */
  const bits = [];
  const put = (/** @type {number} */ value, /** @type {number} */ n) => {
    for (let i = n - 1; i >= 0; i -= 1) bits.push((value >>> i) & 1);
  };
  put(0b0100, 4);
  put(bytes.length, 8);
  for (const b of bytes) put(b, 8);
  const capacityBits = CAPACITY[version] * 8;
  put(0, Math.min(4, capacityBits - bits.length));
  put(0, (8 - (bits.length % 8)) % 8);
  for (let pad = 0xec; bits.length < capacityBits; pad ^= 0xec ^ 0x11) put(pad, 8);
  /** @type {number[]} */
  const data = [];
  for (let i = 0; i < bits.length; i += 8) data.push(bits.slice(i, i + 8).reduce((a, b) => (a << 1) | b, 0));
  const codewords = data.concat(rsRemainder(data, rsDivisor(EC_CODEWORDS[version])));

  const size = 17 + 4 * version;
  const modules = Array.from({ length: size }, () => new Array(size).fill(false));
  const fixed = Array.from({ length: size }, () => new Array(size).fill(false));
  const set = (/** @type {number} */ x, /** @type {number} */ y, /** @type {boolean} */ dark) => {
    modules[y][x] = dark;
    fixed[y][x] = true;
  };
  for (let i = 0; i < size; i += 1) {
    set(6, i, i % 2 === 0); // timing patterns
    set(i, 6, i % 2 === 0);
  }
  for (const [cx, cy] of [[3, 3], [size - 4, 3], [3, size - 4]]) {
    for (let dy = -4; dy <= 4; dy += 1) {
      for (let dx = -4; dx <= 4; dx += 1) {
        const x = cx + dx;
        const y = cy + dy;
        const d = Math.max(Math.abs(dx), Math.abs(dy));
        if (x >= 0 && x < size && y >= 0 && y < size) set(x, y, d !== 2 && d !== 4); // finders and separators
      }
    }
  }
  if (version > 1) {
    const c = size - 7; // the one alignment pattern of versions 2 and 3
    for (let dy = -2; dy <= 2; dy += 1) for (let dx = -2; dx <= 2; dx += 1) set(c + dx, c + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
  }
  // format information: level M (00), mask 0, BCH(15,5), XOR 0x5412
  const formatData = 0; // (M = 0b00) << 3 | mask 0
  let rem = formatData;
  for (let i = 0; i < 10; i += 1) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  const format = ((formatData << 10) | rem) ^ 0x5412;
  const fbit = (/** @type {number} */ i) => ((format >>> i) & 1) === 1;
  for (let i = 0; i <= 5; i += 1) set(8, i, fbit(i));
  set(8, 7, fbit(6));
  set(8, 8, fbit(7));
  set(7, 8, fbit(8));
  for (let i = 9; i < 15; i += 1) set(14 - i, 8, fbit(i));
  for (let i = 0; i < 8; i += 1) set(size - 1 - i, 8, fbit(i));
  for (let i = 8; i < 15; i += 1) set(8, size - 15 + i, fbit(i));
  set(8, size - 8, true); // the dark module
  // the codewords, in two-column zigzags from the bottom right, then mask 0 ((x + y) even)
  let i = 0;
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    for (let vert = 0; vert < size; vert += 1) {
      for (let j = 0; j < 2; j += 1) {
        const x = right - j;
        const upward = ((right + 1) & 2) === 0;
        const y = upward ? size - 1 - vert : vert;
        if (!fixed[y][x]) {
          const dark = i < codewords.length * 8 && ((codewords[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
          modules[y][x] = dark !== ((x + y) % 2 === 0);
          i += 1;
        }
      }
    }
  }
  return modules;
}

/**
 * An SVG path (`d`) drawing the dark modules of `matrix`, offset by a `quiet`-module
 * margin; draw it in a viewBox of `matrix.length + 2 * quiet` units.
 * @param {boolean[][]} matrix @param {number} [quiet] @returns {string}
 */
export function qrSvgPath(matrix, quiet = 4) {
  const parts = [];
  for (let y = 0; y < matrix.length; y += 1) {
    for (let x = 0; x < matrix.length; x += 1) {
      if (matrix[y][x]) parts.push(`M${x + quiet} ${y + quiet}h1v1h-1z`);
    }
  }
  return parts.join("");
}
