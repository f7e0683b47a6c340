// The record's `container` and `node` sections, typed: where the crashed process ran (its
// cgroup, unit, container and pod) and the host the handler ran on (docs/record.md). Each key
// is absent when unknown, never null.
#pragma once

#include "common/record/fields.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace common::record {

// From /proc/<pid>/cgroup and, in a pod, /proc/<pid>/environ (the crasher's own claim).
struct Container {
  std::optional<std::string> cgroup;
  std::optional<std::string> unit;
  std::optional<std::string> container_id;
  std::optional<std::string> pod_uid;
  std::optional<std::string> claimed_pod_name;
  std::optional<std::string> claimed_pod_namespace;
  Unknown unknown;
  bool empty() const { return is_empty(); }
  bool operator==(const Container&) const = default;

private:
  bool is_empty() const;
};

// Read by the handler in the initial namespaces: not the crasher's to choose.
struct Node {
  std::optional<std::string> machine_id;
  std::optional<std::string> boot_id;
  std::optional<std::string> hostname; // uname's nodename, not %h
  Unknown unknown;
  bool empty() const { return !machine_id && !boot_id && !hostname && unknown.fields.empty(); }
  bool operator==(const Node&) const = default;
};

nlohmann::json to_json(const Container& container);
Container container_from_json(const nlohmann::json& object); // a non-object reads as empty
nlohmann::json to_json(const Node& node);
Node node_from_json(const nlohmann::json& object); // a non-object reads as empty

} // namespace common::record
