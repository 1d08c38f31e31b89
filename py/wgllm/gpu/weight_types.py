"""Composed by scripts/compose_shaders.py from the layout sections of shaders/compose/types/*.wgsl: edit those."""

# ggml type id -> (name, elements a block, bytes a block, fields): the repacked arrays in binding order, each bytes [start, end) of every block (sm, sc3: packed scales decoded, weights.py)
WEIGHT_TYPES: dict[int, tuple[str, int, int, tuple[tuple[str, int, int], ...]]] = {
    0: ('F32', 1, 4, (('w', 0, 4),)),
    1: ('F16', 1, 2, (('w', 0, 2),)),
    2: ('Q4_0', 32, 18, (('qs', 2, 18), ('d', 0, 2),)),
    3: ('Q4_1', 32, 20, (('qs', 4, 20), ('dm', 0, 4),)),
    6: ('Q5_0', 32, 22, (('qs', 6, 22), ('qh', 2, 6), ('d', 0, 2),)),
    7: ('Q5_1', 32, 24, (('qs', 8, 24), ('qh', 4, 8), ('dm', 0, 4),)),
    8: ('Q8_0', 32, 34, (('qs', 2, 34), ('d', 0, 2),)),
    10: ('Q2_K', 256, 84, (('qs', 16, 80), ('sc', 0, 16), ('dm', 80, 84),)),
    11: ('Q3_K', 256, 110, (('hm', 0, 32), ('qs', 32, 96), ('sc3', 96, 112), ('d', 108, 110),)),
    12: ('Q4_K', 256, 144, (('qs', 16, 144), ('sm', 4, 20), ('dm', 0, 4),)),
    13: ('Q5_K', 256, 176, (('qs', 48, 176), ('qh', 16, 48), ('sm', 4, 20), ('dm', 0, 4),)),
    14: ('Q6_K', 256, 210, (('ql', 0, 128), ('qh', 128, 192), ('sc', 192, 208), ('d', 208, 210),)),
    20: ('IQ4_NL', 32, 18, (('qs', 2, 18), ('d', 0, 2),)),
    23: ('IQ4_XS', 256, 136, (('qs', 8, 136), ('sl', 4, 8), ('dh', 0, 4),)),
    30: ('BF16', 1, 2, (('w', 0, 2),)),
}
