"""Numba kernel of SCALE-Sim v3's USER bandwidth mode: double-buffered read SRAMs that prefetch
over an interface of limited words per cycle, the OFMAP write buffer, and the stalls they cause.

Orchestrated by ``bandwidth.py`` (which builds the prefetch order and the line index); the
semantics follow SCALE-Sim 3.0.0's ``memory/read_buffer.py``, ``memory/write_buffer.py`` and
``memory/double_buffered_scratchpad_mem.py`` (docs/hwsim.md, "Bandwidth stalls"):

- each read SRAM holds its operand's prefetch order cut into *lines* (sets of
  ceil(words / 100) elements); the active half is a circular window of lines; a demand for an
  element outside the window moves the window on by the prefetch half's lines, and that prefetch
  ends ``P = ceil(prefetch words / bandwidth) + 1`` cycles after the previous one;
- the read delay of a demand row starts at the hit latency (1); each prefetch it waits for
  changes it by ``p = end - (cycle + delay)``, by ``2p`` when ``p > 0`` (SCALE-Sim's update,
  which can also lower it below the hit latency);
- the array stalls, per row, by the largest of the ifmap delay - 1, the filter delay - 1 and the
  write-buffer delay; rows run at ``row + stalls so far``.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def line_csr(order, space, per_line):
    """For each word id, the sorted distinct SRAM lines holding it (CSR ``starts``, ``lines``):
    the k-th valid (>= 0) entry of ``order`` lies in line k // per_line. Returns (starts, lines,
    number of lines), counting the last, possibly empty, line as SCALE-Sim does."""
    last = np.full(space, -1, dtype=np.int64)
    count = np.zeros(space + 1, dtype=np.int64)
    k = 0
    for a in order:
        if a < 0:
            continue
        line = k // per_line
        if last[a] != line:
            last[a] = line
            count[a + 1] += 1
        k += 1
    for a in range(space):
        count[a + 1] += count[a]
    lines = np.empty(count[space], dtype=np.int64)
    fill = count[:space].copy()
    last[:] = -1
    k = 0
    for a in order:
        if a < 0:
            continue
        line = k // per_line
        if last[a] != line:
            last[a] = line
            lines[fill[a]] = line
            fill[a] += 1
        k += 1
    return count, lines, k // per_line + 1


@njit(cache=True, inline="always")  # inlined: a call per demanded word would pay array refcounts
def _hit(addr, starts, lines, s, e):
    """Is any line holding ``addr`` inside the circular window [s, e) (s == e: every line)?"""
    lo = starts[addr]
    hi = starts[addr + 1]
    if hi == lo:
        return False
    if s < e:
        a = lo
        b = hi
        while a < b:
            mid = (a + b) // 2
            if lines[mid] < s:
                a = mid + 1
            else:
                b = mid
        return a < hi and lines[a] < e
    return lines[hi - 1] >= s or lines[lo] < e


@njit(cache=True, inline="always")
def _read(addr, cycle, delay, st, starts, lines, par, seen):
    """Serve one demand; ``st`` = [window start, window end, last prefetch end, prefetches],
    ``par`` = [lines, active lines, prefetch lines, cycles per prefetch]; ``seen[addr]`` = the
    prefetch count at which ``addr`` was last found in the window (the window only moves on a
    prefetch, so a word seen since then is a hit). Returns the new delay."""
    if addr < 0:  # a hole (a word outside the input SCALE-Sim was given): nothing to read
        return delay
    if seen[addr] == st[3]:
        return delay
    n_lines, nact, npf, per = par[0], par[1], par[2], par[3]
    while not _hit(addr, starts, lines, st[0], st[1]):
        if npf == 0:  # everything is active: cannot miss (guard against a malformed index)
            break
        s = (st[0] + npf) % n_lines
        st[0] = s
        st[1] = (s + nact) % n_lines
        st[2] += per
        st[3] += 1
        pot = st[2] - (cycle + delay)
        delay += pot
        if pot > 0:
            delay += pot
    seen[addr] = st[3]
    return delay


@njit(cache=True)
def user_bandwidth_run(kind, E, M, K, AR, AC, pix, win, ifmap_id, if_starts, if_lines, if_par,
                       fl_starts, fl_lines, fl_par, of_words, width, final_only):
    """Walk every demand row of a dense layer (``kind`` 0 OS, 1 WS, 2 IS) through the read buffers
    and the write buffer. ``ifmap_id[input address]``: the word's id, -1 for a hole. ``final_only``: only the last row fold's outputs are written (partial
    sums that stay in the SRAM). Returns (stall cycles, SCALE-Sim total cycles (last index),
    ifmap prefetches, filter prefetches, OFMAP words written to DRAM)."""
    seen_if = np.full(if_starts.size - 1, -1, dtype=np.int64)
    seen_fl = np.full(fl_starts.size - 1, -1, dtype=np.int64)
    st_if = np.zeros(4, dtype=np.int64)
    st_fl = np.zeros(4, dtype=np.int64)
    # the first fill: lines [0, active) (the whole ring when active = all), ready at cycle -1
    st_if[1] = if_par[1] % if_par[0]
    st_fl[1] = fl_par[1] % fl_par[0]
    st_if[2] = -1
    st_fl[2] = -1
    # write buffer (SCALE-Sim write_buffer with lines of ``width`` words)
    active = (of_words + 1) // 2
    per_drain = (of_words - active + width - 1) // width
    if kind == 0:
        rf = (E + AR - 1) // AR
        cf = (M + AC - 1) // AC
        pre = K - 1
        block = AR
        per_fold = K + AR + AC - 2
    elif kind == 1:
        rf = (K + AR - 1) // AR
        cf = (M + AC - 1) // AC
        pre = 2 * AR - 1
        block = E
        per_fold = 2 * AR + AC + E - 2
    else:
        rf = (K + AR - 1) // AR
        cf = (E + AC - 1) // AC
        pre = 2 * AR - 1
        block = M
        per_fold = 2 * AR + AC + M - 2
    pads = np.zeros(rf * cf * (block + 2) * AC // width + rf * cf * 4 + 1024, dtype=np.int32)
    nlines = 0
    line_idx = 0
    start = 0
    free = of_words
    drain_end = 0
    written = 0
    stalls = 0
    total = 0
    row = 0
    for fc in range(cf):
        for fr in range(rf):
            if kind == 0:
                p0 = fr * AR
                m0 = fc * AC
                ur = min(AR, E - p0)
                cu = min(AC, M - m0)
                lo = AR - ur
                hi = AR
            elif kind == 1:
                j0 = fr * AR
                m0 = fc * AC
                ur = min(AR, K - j0)
                cu = min(AC, M - m0)
                lo = 0
                hi = E
            else:
                j0 = fr * AR
                p0 = fc * AC
                ur = min(AR, K - j0)
                cu = min(AC, E - p0)
                lo = 0
                hi = M
            writes = not final_only or fr == rf - 1
            for d in range(per_fold):
                cycle = row + stalls
                d_if = 1
                d_fl = 1
                if kind == 0:
                    for r in range(ur):
                        t = d - r
                        if 0 <= t < K:
                            d_if = _read(ifmap_id[pix[p0 + r] + win[t]], cycle, d_if, st_if, if_starts, if_lines, if_par, seen_if)
                    for c in range(cu):
                        t = d - c
                        if 0 <= t < K:
                            d_fl = _read(t * M + m0 + c, cycle, d_fl, st_fl, fl_starts, fl_lines, fl_par, seen_fl)
                elif kind == 1:
                    for r in range(ur):
                        u = d - r - AR
                        if 0 <= u < E:
                            d_if = _read(ifmap_id[pix[u] + win[j0 + r]], cycle, d_if, st_if, if_starts, if_lines, if_par, seen_if)
                    if d < AR and j0 + AR - 1 - d < K:
                        j = j0 + AR - 1 - d
                        for c in range(cu):
                            d_fl = _read(j * M + m0 + c, cycle, d_fl, st_fl, fl_starts, fl_lines, fl_par, seen_fl)
                else:
                    if d < AR and j0 + AR - 1 - d < K:
                        j = j0 + AR - 1 - d
                        for c in range(cu):
                            d_if = _read(ifmap_id[pix[p0 + c] + win[j]], cycle, d_if, st_if, if_starts, if_lines, if_par, seen_if)
                    for r in range(ur):
                        u = d - r - AR
                        if 0 <= u < M:
                            d_fl = _read((j0 + r) * M + u, cycle, d_fl, st_fl, fl_starts, fl_lines, fl_par, seen_fl)
                # OFMAP writes of this row: columns c whose skewed block row d - pre - c is valid
                k = 0
                if writes:
                    dd = d - pre
                    c_hi = min(cu - 1, dd - lo)
                    c_lo = max(0, dd - hi + 1)
                    k = c_hi - c_lo + 1
                cur = cycle
                for _ in range(k):
                    line_idx += 1
                    free -= 1
                    if line_idx == width:
                        nlines += 1
                        line_idx = 0
                    if cur < drain_end:
                        if free <= 0:
                            cur = drain_end
                    elif free < active:
                        if nlines + 2 >= pads.size:
                            grown = np.zeros(2 * pads.size, dtype=np.int32)
                            grown[: pads.size] = pads
                            pads = grown
                        if line_idx != 0:
                            pads[nlines] = width - line_idx
                            nlines += 1
                            line_idx = 0
                        end = min(start + per_drain, nlines)
                        nl = end - start
                        if nl > 0:
                            data = nl * width - pads[end - 1]
                            written += data
                            free += data
                            start = end
                            drain_end = cur + nl - 1
                d_of = cur - cycle
                if cur > total:
                    total = cur
                s = max(d_if - 1, d_fl - 1, d_of)
                if s > 0:
                    stalls += s
                row += 1
    if line_idx != 0:
        if nlines + 1 >= pads.size:
            grown = np.zeros(2 * pads.size, dtype=np.int32)
            grown[: pads.size] = pads
            pads = grown
        pads[nlines] = width - line_idx
        nlines += 1
    while start < nlines:
        end = min(start + per_drain, nlines)
        written += (end - start) * width - pads[end - 1]
        start = end
    return stalls, total, st_if[3], st_fl[3], written
