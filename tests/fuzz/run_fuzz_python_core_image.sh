#!/usr/bin/env bash
# Runs the stored core image's fuzz target (libFuzzer + ASan + UBSan, built by
# tests/fuzz/CMakeLists.txt) for a bounded time, from a seed of a small core.
#
#   run_fuzz_python_core_image.sh [seconds]   (default 20; see fuzz_common.sh)
source "$(dirname "$0")/fuzz_common.sh"
seconds=${1:-20}
fuzz_setup fuzz_python_core_image

# A chunk size byte, then an ELF64 core header with one PT_LOAD (RW, 16 bytes) and its bytes.
{
  printf '\x05'
  printf '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00'
  printf '\x04\x00\x3e\x00\x01\x00\x00\x00'          # ET_CORE, x86_64, version
  printf '\x00\x00\x00\x00\x00\x00\x00\x00'          # e_entry
  printf '\x40\x00\x00\x00\x00\x00\x00\x00'          # e_phoff
  printf '\x00\x00\x00\x00\x00\x00\x00\x00'          # e_shoff
  printf '\x00\x00\x00\x00\x40\x00\x38\x00\x01\x00\x00\x00\x00\x00\x00\x00' # flags, sizes, phnum 1
  printf '\x01\x00\x00\x00\x06\x00\x00\x00'          # PT_LOAD, PF_R|PF_W
  printf '\x78\x00\x00\x00\x00\x00\x00\x00'          # p_offset 120
  printf '\x00\x10\x00\x00\x00\x00\x00\x00'          # p_vaddr
  printf '\x00\x00\x00\x00\x00\x00\x00\x00'          # p_paddr
  printf '\x10\x00\x00\x00\x00\x00\x00\x00'          # p_filesz
  printf '\x00\x20\x00\x00\x00\x00\x00\x00'          # p_memsz
  printf '\x00\x10\x00\x00\x00\x00\x00\x00'          # p_align
  printf 'sixteen bytes!!!'
} > "$work/corpus/one_segment"

fuzz_run "$seconds" 65536 -timeout=10
