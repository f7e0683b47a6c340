"""Run inside gdb (`gdb -batch -x gdb_frames.py exe core`): prints every thread's frames as JSON.

One object per thread: {"tid": <lwp>, "frames": [{"name", "type", "pc"}]}, innermost first.
gdb's frame types matter to a comparison: TAILCALL frames are inferred from DWARF call-site
information (a function that jumped to its callee is not on the stack), SIGTRAMP is the signal
trampoline, INLINE frames share the pc of the frame below.
"""
import json

import gdb  # noqa: E402  (only inside gdb)

TYPES = {gdb.NORMAL_FRAME: "normal", gdb.INLINE_FRAME: "inline", gdb.TAILCALL_FRAME: "tailcall",
         gdb.SIGTRAMP_FRAME: "sigtramp"}
threads = []
for inferior in gdb.inferiors():
    for thread in sorted(inferior.threads(), key=lambda t: t.num):
        thread.switch()
        frames = []
        frame = gdb.newest_frame()
        while frame is not None and len(frames) < 64:
            frames.append({"name": frame.name(), "type": TYPES.get(frame.type(), "other"),
                           "pc": frame.pc()})
            try:
                frame = frame.older()
            except gdb.error:
                break
        threads.append({"tid": thread.ptid[1], "frames": frames})
print("GDB-FRAMES " + json.dumps(threads))
