#include "common/store/acl.hpp"

#include <acl/libacl.h>
#include <sys/acl.h>

#include <cerrno>

namespace common {

namespace {

// acl_t owned for the scope (libacl hands out heap objects freed with acl_free).
struct AclHandle {
  acl_t acl = nullptr;
  ~AclHandle() {
    if (acl != nullptr) {
      acl_free(acl);
    }
  }
};

// The ACL_USER entry of `uid`, if the ACL has one.
bool find_user_entry(acl_t acl, uid_t uid, acl_entry_t& out) {
  acl_entry_t entry;
  for (int which = ACL_FIRST_ENTRY; acl_get_entry(acl, which, &entry) == 1;
       which = ACL_NEXT_ENTRY) {
    acl_tag_t tag;
    if (acl_get_tag_type(entry, &tag) != 0 || tag != ACL_USER) {
      continue;
    }
    auto* qualifier = static_cast<uid_t*>(acl_get_qualifier(entry));
    const bool same = qualifier != nullptr && *qualifier == uid;
    acl_free(qualifier);
    if (same) {
      out = entry;
      return true;
    }
  }
  return false;
}

} // namespace

bool acl_may_grant(uid_t uid) {
  // (uid_t)-1 is "no uid" to the kernel, and 65535 the 16-bit one.
  return uid >= k_first_regular_uid && !(uid >= k_dynamic_uid_min && uid <= k_dynamic_uid_max) &&
         uid != k_nobody_uid && uid != 65535 && uid != static_cast<uid_t>(-1);
}

Expected<void> grant_user_access(int fd, uid_t uid, AclAccess access) {
  AclHandle h;
  h.acl = acl_get_fd(fd);
  if (h.acl == nullptr) {
    return fail_errno("Failed to read the ACL", errno);
  }
  acl_entry_t entry;
  if (!find_user_entry(h.acl, uid, entry)) {
    if (acl_create_entry(&h.acl, &entry) != 0 || acl_set_tag_type(entry, ACL_USER) != 0 ||
        acl_set_qualifier(entry, &uid) != 0) {
      return fail_errno("Failed to add an ACL entry", errno);
    }
  }
  acl_permset_t perms;
  if (acl_get_permset(entry, &perms) != 0 || acl_add_perm(perms, ACL_READ) != 0 ||
      (access == AclAccess::list && acl_add_perm(perms, ACL_EXECUTE) != 0) ||
      acl_set_permset(entry, perms) != 0) {
    return fail_errno("Failed to set ACL permissions", errno);
  }
  // The mask becomes the union of the group class: the named user's entry and the owning
  // group's, so the group gains nothing it did not have (a 0600 core keeps group::---).
  if (acl_calc_mask(&h.acl) != 0 || acl_valid(h.acl) != 0) {
    return fail_errno("Failed to build the ACL", errno);
  }
  if (acl_set_fd(fd, h.acl) != 0) {
    return fail_errno("Failed to set the ACL", errno);
  }
  return {};
}

Expected<void> copy_access_acl(int from, int to) {
  AclHandle h;
  h.acl = acl_get_fd(from);
  if (h.acl == nullptr) {
    return errno == ENOTSUP ? Expected<void>() : fail_errno("Failed to read the ACL", errno);
  }
  if (acl_equiv_mode(h.acl, nullptr) == 0) {
    return {}; // only the permission bits, which the caller sets with fchmod
  }
  if (acl_set_fd(to, h.acl) != 0) {
    return fail_errno("Failed to copy the ACL", errno);
  }
  return {};
}

} // namespace common
