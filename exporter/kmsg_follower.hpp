// Crashes the kernel itself failed to hand to the handler: it says so only in its log
// ("coredump: 17653(acc-crasher): over core_pipe_limit, skipping core dump"). The follower reads
// /dev/kmsg and counts those lines as processcore_kernel_dumps_lost_total{reason}.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace exporter {

inline constexpr const char* k_metric_kernel_lost = "processcore_kernel_dumps_lost_total";

// Why the kernel lost a dump: the `reason` label.
enum class KernelLoss : uint8_t {
  pipe_limit,  // "over core_pipe_limit, skipping core dump"
  pipe_failed, // "Core dump to |… pipe failed" (the handler could not be started)
  other,       // another "coredump:" failure ("… aborting core", "… skipping core dump")
};
inline constexpr size_t k_kernel_losses = 3;
std::string_view to_string(KernelLoss r);

// Classifies one kernel log message (the text after "pri,seq,ts,flags;" of a /dev/kmsg record,
// or a plain dmesg line). nullopt for anything that is not a lost dump; a process that asked for
// no dump (RLIMIT_CORE of 1) is not a loss.
std::optional<KernelLoss> classify_kernel_message(std::string_view message);

// Reads `path` (normally /dev/kmsg) on a thread from its end onwards: lines logged before the
// exporter started are not counted again after a restart (the counter starts at 0 for each
// reason, so rate() and increase() see every later loss).
class KmsgFollower : public prometheus::Collectable {
public:
  explicit KmsgFollower(std::string path);
  KmsgFollower(const KmsgFollower&) = delete;
  KmsgFollower& operator=(const KmsgFollower&) = delete;
  ~KmsgFollower() override;

  // Opens the log and starts the thread; false (with a message) when it cannot be opened.
  bool start(std::string& error);
  uint64_t count(KernelLoss r) const { return m_counts[static_cast<size_t>(r)].load(); }

  std::vector<prometheus::MetricFamily> Collect() const override;

private:
  void run();
  void take(std::string_view record);

  std::string m_path;
  int m_fd = -1;
  std::atomic<bool> m_stop{false};
  std::array<std::atomic<uint64_t>, k_kernel_losses> m_counts{};
  std::thread m_thread;
};

} // namespace exporter
