#include "exporter/kmsg_follower.hpp"

#include <catch2/catch.hpp>

using namespace exporter;

TEST_CASE("kernel log lines of lost dumps are classified", "[kmsg]") {
  // As /dev/kmsg hands them out, and as dmesg prints them.
  CHECK(classify_kernel_message(
            "4,1234,5678901,-;coredump: 17653(acc-crasher): over core_pipe_limit, skipping core "
            "dump") == KernelLoss::pipe_limit);
  CHECK(classify_kernel_message("coredump: 17653(x): over core_pipe_limit, skipping core dump") ==
        KernelLoss::pipe_limit);
  CHECK(
      classify_kernel_message("6,99,1,-;coredump: 12(a b): |/usr/sbin/process-core pipe failed") ==
      KernelLoss::pipe_failed);
  CHECK(classify_kernel_message("6,99,1,-;Core dump to |/usr/sbin/process-core pipe failed") ==
        KernelLoss::pipe_failed);
  CHECK(classify_kernel_message("4,7,1,-;coredump: 5(x): format_corename failed, aborting core") ==
        KernelLoss::other);
  // Not losses: the process asked for no dump, advice about settings, unrelated lines.
  CHECK_FALSE(
      classify_kernel_message("4,7,1,-;coredump: 5(x): RLIMIT_CORE is set to 1, aborting core"));
  CHECK_FALSE(classify_kernel_message(
      "4,7,1,-;coredump: 15988(corectl): Unsafe core_pattern used with fs.suid_dumpable=2"));
  CHECK_FALSE(classify_kernel_message(
      "6,8,1,-;pc_crasher[14174]: segfault at 0 ip 000055973d5a13e3 sp 00007fff823ab898"));
  CHECK_FALSE(classify_kernel_message(""));
  // A crasher's comm is its own to choose: it cannot forge a loss from the task name alone.
  CHECK_FALSE(classify_kernel_message("6,8,1,-;evil[1]: segfault; over core_pipe_limit"));
}
