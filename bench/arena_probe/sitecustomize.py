"""Resident memory of each thread's C heap, from inside a Taskerino process.

Put this folder on PYTHONPATH and set TASKERINO_ARENA_PROBE to a file: every Python thread
then calls malloc once as it starts (through a profile hook) to learn which glibc arena it
allocates from, and every 10 s a line of JSON goes to the file with the resident KiB of
each arena (with the threads that use it), of the main heap and of the other
anonymous mappings (blocks mapped on their own, thread stacks), summed from
/proc/self/smaps. The time is CLOCK_MONOTONIC, the same in every process.

bench/bench_memory.py --probe uses it to tell whose memory grows.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from types import FrameType
from typing import Any

HEAP_ALIGN = 64 * 1024 * 1024  # a thread arena's heaps are aligned to their maximum size
PERIOD = 10.0


class _Probe:
    def __init__(self, out: str) -> None:
        self._out = out
        libc = ctypes.CDLL(None)
        self._malloc = libc.malloc
        self._malloc.restype = ctypes.c_void_p
        self._malloc.argtypes = [ctypes.c_size_t]
        self._free = libc.free
        self._free.argtypes = [ctypes.c_void_p]
        self._lock = threading.Lock()
        self._where: dict[str, int] = {}  # thread name -> an address its arena gave
        self._learn()  # the main thread
        threading.setprofile(self._hook)
        threading.Thread(target=self._run, name="arena-probe", daemon=True).start()

    def _learn(self) -> None:
        address = self._malloc(64)
        self._free(address)
        with self._lock:
            self._where[threading.current_thread().name] = int(address or 0)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)  # once per thread
        self._learn()

    def _sample(self) -> dict[str, Any]:
        mappings: list[tuple[int, int, str, int]] = []  # start, end, name, Rss KiB
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                fields = line.split()
                if not fields[0].endswith(":"):
                    start, end = (int(a, 16) for a in fields[0].split("-"))
                    mappings.append((start, end, fields[5] if len(fields) > 5 else "", 0))
                elif fields[0] == "Rss:" and mappings:
                    start, end, name, _ = mappings[-1]
                    mappings[-1] = (start, end, name, int(fields[1]))
        with self._lock:
            where = dict(self._where)
        threads: dict[str, list[str]] = {}  # heap -> the threads that allocate from it
        for thread, address in where.items():
            heap = "main heap"
            for start, end, name, _ in mappings:
                if start <= address < end and name != "[heap]":
                    heap = f"arena {address & ~(HEAP_ALIGN - 1):#x}"
            threads.setdefault(heap, []).append(thread)
        resident: dict[str, int] = {}
        for heap in threads:
            if heap == "main heap":
                resident[heap] = sum(r for _, _, name, r in mappings if name == "[heap]")
            else:
                base = int(heap.split()[1], 16)
                resident[heap] = sum(
                    r for s, _, name, r in mappings if not name and base <= s < base + HEAP_ALIGN
                )
        anonymous = sum(r for _, _, name, r in mappings if not name)
        claimed = sum(r for heap, r in resident.items() if heap != "main heap")
        resident["other anonymous"] = anonymous - claimed
        return {"t": time.monotonic(), "kib": resident, "threads": threads}

    def _run(self) -> None:
        with open(self._out, "a") as out:
            while True:
                out.write(json.dumps(self._sample()) + "\n")
                out.flush()
                time.sleep(PERIOD)


if os.environ.get("TASKERINO_ARENA_PROBE"):
    _Probe(os.environ["TASKERINO_ARENA_PROBE"])
