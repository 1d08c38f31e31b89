// Composed by scripts/compose_shaders.py from the layout sections of shaders/compose/types/*.wgsl: edit those.

export interface WeightTypeRow {
  readonly name: string;
  readonly block: number;
  readonly size: number;
  readonly fields: readonly { readonly name: string; readonly start: number; readonly end: number }[];
}

/** ggml type id -> (name, elements a block, bytes a block, fields): the repacked arrays in binding order, each bytes [start, end) of every block (sm, sc3: packed scales decoded, weights.py). */
export const WEIGHT_TYPES: Readonly<Record<number, WeightTypeRow>> = {
  0: { name: "F32", block: 1, size: 4, fields: [{ name: "w", start: 0, end: 4 }] },
  1: { name: "F16", block: 1, size: 2, fields: [{ name: "w", start: 0, end: 2 }] },
  2: { name: "Q4_0", block: 32, size: 18, fields: [{ name: "qs", start: 2, end: 18 }, { name: "d", start: 0, end: 2 }] },
  3: { name: "Q4_1", block: 32, size: 20, fields: [{ name: "qs", start: 4, end: 20 }, { name: "dm", start: 0, end: 4 }] },
  6: { name: "Q5_0", block: 32, size: 22, fields: [{ name: "qs", start: 6, end: 22 }, { name: "qh", start: 2, end: 6 }, { name: "d", start: 0, end: 2 }] },
  7: { name: "Q5_1", block: 32, size: 24, fields: [{ name: "qs", start: 8, end: 24 }, { name: "qh", start: 4, end: 8 }, { name: "dm", start: 0, end: 4 }] },
  8: { name: "Q8_0", block: 32, size: 34, fields: [{ name: "qs", start: 2, end: 34 }, { name: "d", start: 0, end: 2 }] },
  10: { name: "Q2_K", block: 256, size: 84, fields: [{ name: "qs", start: 16, end: 80 }, { name: "sc", start: 0, end: 16 }, { name: "dm", start: 80, end: 84 }] },
  11: { name: "Q3_K", block: 256, size: 110, fields: [{ name: "hm", start: 0, end: 32 }, { name: "qs", start: 32, end: 96 }, { name: "sc3", start: 96, end: 112 }, { name: "d", start: 108, end: 110 }] },
  12: { name: "Q4_K", block: 256, size: 144, fields: [{ name: "qs", start: 16, end: 144 }, { name: "sm", start: 4, end: 20 }, { name: "dm", start: 0, end: 4 }] },
  13: { name: "Q5_K", block: 256, size: 176, fields: [{ name: "qs", start: 48, end: 176 }, { name: "qh", start: 16, end: 48 }, { name: "sm", start: 4, end: 20 }, { name: "dm", start: 0, end: 4 }] },
  14: { name: "Q6_K", block: 256, size: 210, fields: [{ name: "ql", start: 0, end: 128 }, { name: "qh", start: 128, end: 192 }, { name: "sc", start: 192, end: 208 }, { name: "d", start: 208, end: 210 }] },
  20: { name: "IQ4_NL", block: 32, size: 18, fields: [{ name: "qs", start: 2, end: 18 }, { name: "d", start: 0, end: 2 }] },
  23: { name: "IQ4_XS", block: 256, size: 136, fields: [{ name: "qs", start: 8, end: 136 }, { name: "sl", start: 4, end: 8 }, { name: "dh", start: 0, end: 4 }] },
  30: { name: "BF16", block: 1, size: 2, fields: [{ name: "w", start: 0, end: 2 }] },
};
