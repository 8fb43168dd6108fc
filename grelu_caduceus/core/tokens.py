"""Caduceus' character vocabulary, its complement map, and conversions from gReLU one-hot input."""

import torch

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
BASES = "ACGTN"
VOCAB = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(BASES))}
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
A_ID, C_ID, G_ID, T_ID, N_ID = (VOCAB[b] for b in BASES)
VOCAB_SIZE = len(VOCAB)  # 12; embedding tables are padded (see CaduceusConfig.padded_vocab_size)
ACGT_IDS = (A_ID, C_ID, G_ID, T_ID)

# id -> id of the complementary token; specials and N map to themselves.
COMPLEMENT = {i: i for i in range(VOCAB_SIZE)} | {A_ID: T_ID, T_ID: A_ID, C_ID: G_ID, G_ID: C_ID}


def complement_index(size: int, complement_map: dict | None = None) -> torch.Tensor:
    """(size,) long tensor mapping every (padded) token id to its complement; padding ids map to themselves."""
    mapping = COMPLEMENT if complement_map is None else {int(k): int(v) for k, v in complement_map.items()}
    return torch.tensor([mapping.get(i, i) for i in range(size)], dtype=torch.long)


def strings_to_ids(seqs, dtype=torch.long) -> torch.Tensor:
    """Encode equal-length DNA strings as token ids, (N, L). Unknown letters become N."""
    if isinstance(seqs, str):
        seqs = [seqs]
    lookup = torch.full((256,), N_ID, dtype=torch.uint8)
    for base in "ACGTN":
        lookup[ord(base)] = lookup[ord(base.lower())] = VOCAB[base]
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"Sequences must all have the same length; got lengths {sorted(lengths)[:5]}.")
    raw = torch.frombuffer(bytearray("".join(seqs).encode("ascii", "replace")), dtype=torch.uint8)
    return lookup[raw.long()].view(len(seqs), -1).to(dtype)


def ids_to_onehot(ids: torch.Tensor) -> torch.Tensor:
    """Token ids (N, L) -> gReLU one-hot (N, 4, L) float: A,C,G,T rows, N and specials all-zero."""
    onehot = torch.zeros(ids.shape[0], 4, ids.shape[1])
    for row, token in enumerate(ACGT_IDS):
        onehot[:, row] = (ids == token).float()
    return onehot


def onehot_to_ids(x: torch.Tensor) -> torch.Tensor:
    """gReLU one-hot (N, 4, L) (optionally a 5th MASK row) -> token ids (N, L).

    All-zero columns are N. Not differentiable: use for masking/labels, not for attribution.
    """
    ids = torch.full(x.shape[:1] + x.shape[2:], N_ID, dtype=torch.long, device=x.device)
    present = x[:, :4].sum(1) > 0.5
    ids[present] = x[:, :4].argmax(1)[present] + A_ID
    if x.shape[1] == 5:
        ids[x[:, 4] > 0.5] = MASK_ID
    return ids


def rc_onehot(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of a (N, 4, L) one-hot (a 5th MASK row is only reversed)."""
    if x.shape[1] == 5:
        return torch.cat([x[:, :4].flip(1, 2), x[:, 4:].flip(2)], dim=1)
    return x.flip(1, 2)


def conjoin(fn, x: torch.Tensor, length_dim: int = 1, rc=rc_onehot) -> torch.Tensor:
    """The one strand average (post-hoc conjoining): ``(fn(x) + fn(rc(x)).flip(length_dim)) / 2``.

    The result for the reverse complement is flipped back along its length axis ``length_dim``
    before averaging, so per-position results line up with x's positions. ``rc`` reverse-complements
    the input (``rc_onehot`` for one-hot, ``lambda i: rc_ids(i, comp)`` for token ids).
    """
    return (fn(x) + fn(rc(x)).flip(length_dim)) / 2


def combine_ps_halves(hidden: torch.Tensor) -> torch.Tensor:
    """Strand-symmetric features (..., L, d) of a Caduceus-PS stream (..., L, 2d): the forward half and
    the channel-flipped reverse-complement half, averaged. Features of the reverse complement are then
    the features flipped along length."""
    a, b = hidden.chunk(2, dim=-1)
    return (a + b.flip(-1)) / 2


def rc_ids(ids: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """Reverse complement of token ids (N, L) given a complement index (see complement_index)."""
    return complement.to(ids.device)[ids.flip(-1)]


def embed_onehot(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Embed a one-hot (B, 4|5, L) with an embedding table (V, d) -> (B, L, d).

    Rows A,C,G,T (and MASK for a 5th row) pick their token's embedding; the mass missing from a
    column (1 for an all-zero N column) goes to the N embedding. A matrix product, so gradients
    with respect to ``x`` exist (gReLU's attribution methods need them); exact for one-hot input.
    """
    ids = list(ACGT_IDS) + ([MASK_ID] if x.shape[1] == 5 else [])
    x = x.to(weight.dtype)
    n_mass = 1 - x.sum(1)
    return torch.einsum("bcl,cd->bld", x, weight[ids]) + n_mass[..., None] * weight[N_ID]


def complement_onehot_channels(x: torch.Tensor) -> torch.Tensor:
    """Complement (not reverse) a (B, 4|5, L) one-hot: A<->T, C<->G rows; MASK row unchanged."""
    if x.shape[1] == 5:
        return torch.cat([x[:, :4].flip(1), x[:, 4:]], dim=1)
    return x.flip(1)
