// The pager of a long listing on a terminal, as systemd's tools do: $CORECTL_PAGER, else $PAGER,
// else less with LESS=FRSX (quit when one screen, colours, chop long lines, no termcap init).
#pragma once

#include <sys/types.h>

namespace cli {

// True once a Pager has pointed stdout at a pager: the output still reaches a terminal.
bool paging();

class Pager {
public:
  // Starts the pager and points stdout at it, when stdout is a terminal and a pager is wanted
  // (not "" or "cat"); otherwise does nothing. Run as root under sudo or pkexec, only less is
  // used, in its secure mode (LESSSECURE=1: no shell, no editor, no log files).
  void start();
  // Flushes and closes our end, then waits for the pager to exit (the user quits it).
  void finish();
  ~Pager() { finish(); }

private:
  pid_t m_pid = -1;
};

} // namespace cli
