"""Numba kernels: demand streams of the systolic array and mask reductions over tiles.

Compiled once and cached on disk (``cache=True``, in ``__pycache__`` next to this file).

Working-set DRAM model (the SCALE-Sim v3 read buffer in bandwidth-estimation mode): the array's
demand stream of one operand is read in order; every address not yet in the current working
set is fetched from DRAM and joins it; when the working set holds ``capacity`` distinct words
(half of the operand's SRAM; the other half is the prefetch buffer) a new, empty working set
starts. DRAM reads = number of fetches. The stream order per dataflow is the order in which the
array consumes operands (fold by fold, skewed cycle by cycle, PE by PE); each kernel below walks
one of those streams without materialising it.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def im2col_offsets(E, K, out_w, sh, sw, kw, cg, in_w):
    """ifmap address of im2col element (p, j) = pix[p] + win[j] (input stored y, x, c)."""
    pix = np.empty(E, dtype=np.int64)
    for p in range(E):
        oy = p // out_w
        ox = p - oy * out_w
        pix[p] = (oy * sh * in_w + ox * sw) * cg
    win = np.empty(K, dtype=np.int64)
    kwc = kw * cg
    for j in range(K):
        r = j // kwc
        rem = j - r * kwc
        s = rem // cg
        win[j] = (r * in_w + s) * cg + (rem - s * cg)
    return pix, win


@njit(cache=True)
def dram_reads_stream(kind, E, M, K, AR, AC, out_w, sh, sw, kw, cg, in_w, space, capacity):
    """DRAM words fetched for one operand stream. ``kind``:
    0 = OS ifmap, 1 = OS filter, 2 = WS ifmap, 3 = IS ifmap, 4 = IS filter."""
    stamp = np.full(space, -1, dtype=np.int32)
    pix, win = im2col_offsets(E, K, out_w, sh, sw, kw, cg, in_w)
    blk = 0
    cnt = 0
    total = 0
    if kind == 0:  # OS ifmap: folds (fc, fr); within a fold, cycle d feeds row c with element t=d-c
        cf = (M + AC - 1) // AC
        rf = (E + AR - 1) // AR
        for fc in range(cf):
            for fr in range(rf):
                p0 = fr * AR
                used = min(AR, E - p0)
                for d in range(K + used - 1):
                    c_lo = max(0, d - K + 1)
                    c_hi = min(used - 1, d)
                    for c in range(c_lo, c_hi + 1):
                        a = pix[p0 + c] + win[d - c]
                        if stamp[a] != blk:
                            stamp[a] = blk
                            total += 1
                            cnt += 1
                            if cnt == capacity:
                                blk += 1
                                cnt = 0
    elif kind == 1:  # OS filter: column c gets filter m0+c, reduction index t=d-c
        cf = (M + AC - 1) // AC
        rf = (E + AR - 1) // AR
        for fc in range(cf):
            m0 = fc * AC
            used = min(AC, M - m0)
            for fr in range(rf):
                for d in range(K + used - 1):
                    c_lo = max(0, d - K + 1)
                    c_hi = min(used - 1, d)
                    for c in range(c_lo, c_hi + 1):
                        a = (m0 + c) * K + (d - c)
                        if stamp[a] != blk:
                            stamp[a] = blk
                            total += 1
                            cnt += 1
                            if cnt == capacity:
                                blk += 1
                                cnt = 0
    elif kind == 2:  # WS ifmap: row c holds window index j0+c; pixel p = d - c streams through
        cf = (M + AC - 1) // AC
        rf = (K + AR - 1) // AR
        for fc in range(cf):
            for fr in range(rf):
                j0 = fr * AR
                used = min(AR, K - j0)
                for d in range(E + used - 1):
                    c_lo = max(0, d - E + 1)
                    c_hi = min(used - 1, d)
                    for c in range(c_lo, c_hi + 1):
                        a = pix[d - c] + win[j0 + c]
                        if stamp[a] != blk:
                            stamp[a] = blk
                            total += 1
                            cnt += 1
                            if cnt == capacity:
                                blk += 1
                                cnt = 0
    elif kind == 3:  # IS ifmap: the stationary tile is loaded row by row (last window row first)
        cf = (E + AC - 1) // AC
        rf = (K + AR - 1) // AR
        for fc in range(cf):
            p0 = fc * AC
            pused = min(AC, E - p0)
            for fr in range(rf):
                j0 = fr * AR
                jused = min(AR, K - j0)
                for i in range(AR):
                    jj = AR - 1 - i
                    if jj >= jused:
                        continue
                    for c in range(pused):
                        a = pix[p0 + c] + win[j0 + jj]
                        if stamp[a] != blk:
                            stamp[a] = blk
                            total += 1
                            cnt += 1
                            if cnt == capacity:
                                blk += 1
                                cnt = 0
    else:  # IS filter: row c holds window index j0+c; filter m = d - c streams through
        cf = (E + AC - 1) // AC
        rf = (K + AR - 1) // AR
        for fc in range(cf):
            for fr in range(rf):
                j0 = fr * AR
                used = min(AR, K - j0)
                for d in range(M + used - 1):
                    c_lo = max(0, d - M + 1)
                    c_hi = min(used - 1, d)
                    for c in range(c_lo, c_hi + 1):
                        a = (d - c) * K + j0 + c
                        if stamp[a] != blk:
                            stamp[a] = blk
                            total += 1
                            cnt += 1
                            if cnt == capacity:
                                blk += 1
                                cnt = 0
    return total


@njit(cache=True)
def os_tile_activity(mask, E, M, AR, AC):
    """mask: (n, M, E) bool, 1 = conditional part needed. Returns per image:
    tile_active (n, ceil(E/AR), ceil(M/AC)) = active outputs per OS tile,
    pix_any_per_fc (n, ceil(M/AC)) = pixels with any active output among the tile's filters,
    pix_any (n,), filt_any (n,), active (n,)."""
    n = mask.shape[0]
    rf = (E + AR - 1) // AR
    cf = (M + AC - 1) // AC
    tiles = np.zeros((n, rf, cf), dtype=np.int64)
    pix_fc = np.zeros((n, cf), dtype=np.int64)
    pix_any = np.zeros(n, dtype=np.int64)
    filt_any = np.zeros(n, dtype=np.int64)
    active = np.zeros(n, dtype=np.int64)
    seen_fc = np.zeros((E, cf), dtype=np.bool_)
    for i in range(n):
        seen_fc[:, :] = False
        for m in range(M):
            fc = m // AC
            any_m = False
            for p in range(E):
                if mask[i, m, p]:
                    any_m = True
                    tiles[i, p // AR, fc] += 1
                    seen_fc[p, fc] = True
            if any_m:
                filt_any[i] += 1
        for p in range(E):
            any_p = False
            for fc in range(cf):
                if seen_fc[p, fc]:
                    pix_fc[i, fc] += 1
                    any_p = True
            if any_p:
                pix_any[i] += 1
        s = 0
        for a in range(rf):
            for b in range(cf):
                s += tiles[i, a, b]
        active[i] = s
    return tiles, pix_fc, pix_any, filt_any, active


@njit(cache=True)
def is_tile_activity(mask, E, M, AC):
    """mask: (n, M, E) bool. Per image and pixel tile of AC pixels: filters with any active
    output among the tile's pixels, shape (n, ceil(E/AC))."""
    n = mask.shape[0]
    cf = (E + AC - 1) // AC
    out = np.zeros((n, cf), dtype=np.int64)
    for i in range(n):
        for m in range(M):
            for fc in range(cf):
                p0 = fc * AC
                p1 = min(E, p0 + AC)
                for p in range(p0, p1):
                    if mask[i, m, p]:
                        out[i, fc] += 1
                        break
    return out


@njit(cache=True)
def ofmap_write_buffer(kind, E, M, K, AR, AC, total_words):
    """The OFMAP SRAM as a double-buffered write buffer (SCALE-Sim v3 ``write_buffer``): outputs
    arrive cycle by cycle as the array produces them; they are packed into lines of AC words;
    when the buffer is more than half full and no drain is running, the lines are pushed (the
    partial line padded) and the next ceil(half / AC) lines drain to DRAM, one line per cycle;
    a write to a full buffer during a drain stalls the array. ``kind``: 0 OS, 1 WS, 2 IS.
    Returns (DRAM words written, stall cycles, demand lines)."""
    active = int(np.ceil(total_words * 0.5))
    drain = total_words - active
    per_drain = (drain + AC - 1) // AC
    if kind == 0:
        rf = (E + AR - 1) // AR
        cf = (M + AC - 1) // AC
        pre = K - 1
        block = AR
    elif kind == 1:
        rf = (K + AR - 1) // AR
        cf = (M + AC - 1) // AC
        pre = 2 * AR - 1
        block = E
    else:
        rf = (K + AR - 1) // AR
        cf = (E + AC - 1) // AC
        pre = 2 * AR - 1
        block = M
    pads = np.zeros(rf * cf * (block + 2) + 1024, dtype=np.int32)  # grown on demand
    nlines = 0
    line_idx = 0
    start = 0
    free = total_words
    drain_end = 0
    stall_total = 0
    written = 0
    row = 0
    for fc in range(cf):
        for fr in range(rf):
            if kind == 0:
                lo = AR - min(AR, E - fr * AR)
                hi = AR
                cu = min(AC, M - fc * AC)
            elif kind == 1:
                lo = 0
                hi = E
                cu = min(AC, M - fc * AC)
            else:
                lo = 0
                hi = M
                cu = min(AC, E - fc * AC)
            row += pre
            for d in range(block + AC - 1):
                c_hi = min(cu - 1, d - lo)
                c_lo = max(0, d - hi + 1)
                k = c_hi - c_lo + 1
                if k <= 0:
                    row += 1
                    continue
                cur = row + stall_total
                offset = 0
                if (cur < drain_end and free - k > 0) or (cur >= drain_end and free - k >= active):
                    free -= k
                    tot = line_idx + k
                    nlines += tot // AC
                    line_idx = tot % AC
                else:
                    for _ in range(k):
                        line_idx += 1
                        free -= 1
                        if line_idx == AC:
                            nlines += 1
                            line_idx = 0
                        if cur < drain_end:
                            if free <= 0:
                                offset += drain_end - cur
                                cur = drain_end
                        elif free < active:
                            if nlines + 2 >= pads.size:
                                grown = np.zeros(2 * pads.size, dtype=np.int32)
                                grown[: pads.size] = pads
                                pads = grown
                            if line_idx != 0:
                                pads[nlines] = AC - line_idx
                                nlines += 1
                                line_idx = 0
                            end = min(start + per_drain, nlines)
                            nl = end - start
                            if nl > 0:
                                data = nl * AC - pads[end - 1]
                                written += data
                                free += data
                                start = end
                                drain_end = cur + nl - 1
                stall_total += offset
                row += 1
    # drain everything left after the last output
    if line_idx != 0:
        pads[nlines] = AC - line_idx
        nlines += 1
    while start < nlines:
        end = min(start + per_drain, nlines)
        written += (end - start) * AC - pads[end - 1]
        start = end
    return written, stall_total, row

