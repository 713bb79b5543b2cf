/*
 * Internal helpers shared by the shim's source files. Everything here is async-signal-safe: it
 * is used in children created by a raw clone3 from a multithreaded process, where only raw
 * system calls are allowed (no malloc, no stdio, no glibc wrappers that take locks or talk to
 * other threads — setresuid and friends go through syscall() because glibc's wrappers try to
 * synchronise credentials with threads that do not exist in the child).
 */
#ifndef ATOLL_SHIM_INTERNAL_H
#define ATOLL_SHIM_INTERNAL_H

#include "../include/atoll_shim.h"
#include <errno.h>
#include <stdint.h>

/// clone3's argument block (linux/sched.h conflicts with glibc's <sched.h>, so it is restated).
struct atoll_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static inline size_t atoll_strlen(const char *s) {
    size_t n = 0;
    if (s)
        while (s[n]) n++;
    return n;
}

/// Copies at most cap-1 bytes and terminates (no truncation marker: the path is a hint).
static inline void atoll_strlcpy(char *dst, const char *src, size_t cap) {
    size_t i = 0;
    if (src)
        for (; src[i] && i + 1 < cap; i++) dst[i] = src[i];
    dst[i] = 0;
}

/// Records a failure and returns -err, so call sites read `return atoll_fail(e, errno, "mount", target);`.
static inline int atoll_fail(atoll_error *e, int err, const char *call, const char *path) {
    if (e) {
        e->err = err;
        atoll_strlcpy(e->call, call, sizeof e->call);
        atoll_strlcpy(e->path, path ? path : "", sizeof e->path);
    }
    return -err;
}

/// Formats a non-negative integer in decimal; returns the length written (buf >= 21 bytes).
static inline size_t atoll_utoa(uint64_t v, char *buf) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

long atoll_clone3(struct atoll_clone_args *args);

#endif
