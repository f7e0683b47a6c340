"""A program with JIT code of its own: it copies a function into anonymous executable memory
(push %rbp; mov %rsp,%rbp; movq $0,0: a write to address 0), prints its address and its pid,
waits for a line on stdin (the test writes the perf map meanwhile) and calls it through ctypes.
x86-64 only."""
import ctypes
import mmap
import os
import sys

CODE = bytes([0x55, 0x48, 0x89, 0xe5,                    # push %rbp; mov %rsp,%rbp
              0x48, 0xc7, 0x04, 0x25, 0, 0, 0, 0, 0, 0, 0, 0,  # movq $0x0,0x0
              0x5d, 0xc3])                               # pop %rbp; ret

# Private, as a JIT's: shared anonymous memory is a file of the kernel's (NT_FILE lists it).
page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                 prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(CODE)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
print(f"{address:x} {len(CODE):x} {os.getpid()}", flush=True)
sys.stdin.readline()
ctypes.CFUNCTYPE(None)(address)()
