/*
 * Seccomp compilation (libseccomp) and capability names (libcap). Both run in the parent, once
 * per profile: the children only receive the finished BPF program and a capability bit mask.
 */
#define _GNU_SOURCE
#include "shim_internal.h"

#include <linux/filter.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int atoll_seccomp_build(const atoll_seccomp_rule *rules, uint32_t nrules, void **prog_out, uint32_t *len_out, atoll_error *err) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return atoll_fail(err, ENOMEM, "seccomp_init", "");
    int rc = 0;
    /* Only the native ABI is in the filter: a syscall made through another one (int 0x80 on
     * x86_64, x32 numbers) matches no architecture and takes the bad-arch action. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0) {
        atoll_fail(err, -rc, "seccomp_attr_set(ACT_BADARCH)", "");
        goto out;
    }
    /* no_new_privs is set by the child itself, right before loading. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc < 0) {
        atoll_fail(err, -rc, "seccomp_attr_set(CTL_NNP)", "");
        goto out;
    }
    for (uint32_t i = 0; i < nrules; i++) {
        const atoll_seccomp_rule *r = &rules[i];
        int nr = seccomp_syscall_resolve_name(r->name);
        if (nr == __NR_SCMP_ERROR) {
            rc = atoll_fail(err, ENOSYS, "seccomp_syscall_resolve_name", r->name);
            goto out;
        }
        uint32_t action = r->errno_value > 0 ? SCMP_ACT_ERRNO((uint32_t)r->errno_value) : SCMP_ACT_KILL_PROCESS;
        if (r->arg_index >= 0) {
            struct scmp_arg_cmp cmp = SCMP_CMP((unsigned)r->arg_index, SCMP_CMP_MASKED_EQ, r->mask, r->value);
            rc = seccomp_rule_add_array(ctx, action, nr, 1, &cmp);
        } else {
            rc = seccomp_rule_add(ctx, action, nr, 0);
        }
        if (rc < 0) {
            atoll_fail(err, -rc, "seccomp_rule_add", r->name);
            goto out;
        }
    }
    /* libseccomp 2.5 exports to an fd only; a memfd keeps it in memory. */
    int fd = (int)syscall(SYS_memfd_create, "atoll-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = atoll_fail(err, errno, "memfd_create", "atoll-seccomp");
        goto out;
    }
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        close(fd);
        atoll_fail(err, -rc, "seccomp_export_bpf", "");
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0) {
        close(fd);
        rc = atoll_fail(err, EINVAL, "seccomp_export_bpf(size)", "");
        goto out;
    }
    void *buf = malloc((size_t)size);
    if (!buf) {
        close(fd);
        rc = atoll_fail(err, ENOMEM, "malloc", "");
        goto out;
    }
    if (pread(fd, buf, (size_t)size, 0) != size) {
        int e = errno;
        free(buf);
        close(fd);
        rc = atoll_fail(err, e ? e : EIO, "pread(seccomp program)", "");
        goto out;
    }
    close(fd);
    *prog_out = buf;
    *len_out = (uint32_t)(size / (off_t)sizeof(struct sock_filter));
    rc = 0;
out:
    seccomp_release(ctx);
    return rc < 0 ? (err ? -err->err : rc) : 0;
}

int atoll_cap_from_name(const char *name) {
    cap_value_t cap;
    if (!name) return -1;
    if (cap_from_name(name, &cap) == 0) return (int)cap;
    /* libcap wants "cap_chown"; accept the bare "chown" too. */
    char buf[64] = "cap_";
    size_t n = strlen(name);
    if (n + 5 > sizeof buf) return -1;
    memcpy(buf + 4, name, n + 1);
    if (cap_from_name(buf, &cap) == 0) return (int)cap;
    return -1;
}
