#include "common/record/host.hpp"

namespace common::record {

using nlohmann::json;

bool Container::is_empty() const {
  return !cgroup && !unit && !container_id && !pod_uid && !claimed_pod_name &&
         !claimed_pod_namespace && unknown.fields.empty();
}

Container container_from_json(const json& j) {
  Container c;
  if (!j.is_object()) {
    return c;
  }
  FieldReader in(j);
  in.present_text("cgroup", c.cgroup);
  in.present_text("unit", c.unit);
  in.present_text("container_id", c.container_id);
  in.present_text("pod_uid", c.pod_uid);
  in.present_text("claimed_pod_name", c.claimed_pod_name);
  in.present_text("claimed_pod_namespace", c.claimed_pod_namespace);
  c.unknown = std::move(in).finish();
  return c;
}

json to_json(const Container& c) {
  FieldWriter out(c.unknown);
  out.present_text("cgroup", c.cgroup);
  out.present_text("unit", c.unit);
  out.present_text("container_id", c.container_id);
  out.present_text("pod_uid", c.pod_uid);
  out.present_text("claimed_pod_name", c.claimed_pod_name);
  out.present_text("claimed_pod_namespace", c.claimed_pod_namespace);
  return std::move(out).finish();
}

Node node_from_json(const json& j) {
  Node n;
  if (!j.is_object()) {
    return n;
  }
  FieldReader in(j);
  in.present_text("machine_id", n.machine_id);
  in.present_text("boot_id", n.boot_id);
  in.present_text("hostname", n.hostname);
  n.unknown = std::move(in).finish();
  return n;
}

json to_json(const Node& n) {
  FieldWriter out(n.unknown);
  out.present_text("machine_id", n.machine_id);
  out.present_text("boot_id", n.boot_id);
  out.present_text("hostname", n.hostname);
  return std::move(out).finish();
}

} // namespace common::record
