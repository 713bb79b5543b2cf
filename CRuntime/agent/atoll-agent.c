/*
 * atoll-agent — carries out one request of Atoll's runtime inside a sandbox.
 *
 * PID 1 (atoll-init) starts it for each connection of the runtime, from a sealed memfd, with the
 * connection as fd 3. It runs with exactly the credentials of the sandbox's root: inside the
 * sandbox's user, mount, pid, network and cgroup namespaces and its cgroup, with the sandbox's
 * capability set, no_new_privs and seccomp filter. So every permission check, every symlink,
 * every /proc restriction is the kernel's, as for the sandbox's own code; the worst a hostile
 * sandbox can do to an agent is what it could do to itself. Requests (see atoll_agent.h):
 *
 *   exec  resolves the user in the sandbox's own /etc/passwd and /etc/group (ids outside the
 *         sandbox's 0..65535 are refused, the set*id results checked), takes the given stdio, a
 *         session of its own, the user's credentials, and becomes the process (execve in place).
 *         PID 1, its parent, relays the runtime's signals to its process group and reports how
 *         it ended.
 *   file  stat, list, read (streamed to a pipe), write (streamed from a pipe into a temporary
 *         file renamed over the target only once the runtime confirms every byte arrived),
 *         mkdir, delete (iterative: two descriptors whatever the depth), move, chmod/chown,
 *         search by glob and find in contents (iterative walks with depth and entry bounds),
 *         FIFOs for sessions, and account lookups.
 *
 * It is a static executable (glibc), so it runs in any root filesystem. Every failure is reported
 * as errno + call + the path inside the sandbox.
 */
#define _GNU_SOURCE
#include "atoll_agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT           47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

#define CONN            ATOLL_AGENT_CONNECTION_FD
#define PATH_CAP        4096
#define DEFAULT_PATH    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_GROUPS      64
#define REQUEST_WAIT_MS 10000
#define COMMIT_WAIT_MS  120000

/* ------------------------------------------------------------------------------------------
 * Messages out: numbers and strings are collected, then sent as one packet.
 * ---------------------------------------------------------------------------------------- */

struct out {
    uint16_t kind;
    int64_t *nums;
    size_t nnum, numcap;
    char *strs;
    size_t slen, scap;
    uint32_t nstr;
};

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) _exit(70);
    return q;
}

static void out_begin(struct out *o, uint16_t kind) {
    o->kind = kind;
    o->nnum = 0;
    o->slen = 0;
    o->nstr = 0;
}

static void out_num(struct out *o, int64_t v) {
    if (o->nnum == o->numcap) {
        o->numcap = o->numcap ? o->numcap * 2 : 16;
        o->nums = xrealloc(o->nums, o->numcap * sizeof *o->nums);
    }
    o->nums[o->nnum++] = v;
}

/* A string of at most `n` bytes; a NUL inside ends it early (strings are NUL-terminated). */
static void out_strn(struct out *o, const char *s, size_t n) {
    const char *nul = memchr(s, 0, n);
    if (nul) n = (size_t)(nul - s);
    if (o->slen + n + 1 > o->scap) {
        o->scap = (o->slen + n + 1) * 2;
        o->strs = xrealloc(o->strs, o->scap);
    }
    memcpy(o->strs + o->slen, s, n);
    o->strs[o->slen + n] = 0;
    o->slen += n + 1;
    o->nstr++;
}

static void out_str(struct out *o, const char *s) {
    out_strn(o, s ? s : "", s ? strlen(s) : 0);
}

/* Sends the message with one descriptor (SCM_RIGHTS), or none when `fd` < 0; the runtime being
 * gone (EPIPE) ends the agent. */
static void out_send_fd(struct out *o, int fd);
static void out_send(struct out *o) {
    out_send_fd(o, -1);
}
static void out_send_fd(struct out *o, int fd) {
    atoll_agent_header h = {
        .magic = ATOLL_AGENT_MAGIC,
        .kind = o->kind,
        .numbers = (uint16_t)o->nnum,
        .strings = o->nstr,
        .length = (uint32_t)(sizeof h + o->nnum * 8 + o->slen),
    };
    struct iovec iov[3] = {{&h, sizeof h}, {o->nums, o->nnum * 8}, {o->strs, o->slen}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t r;
    do {
        r = sendmsg(CONN, &mh, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) _exit(errno == EPIPE ? 0 : 71);
}

static struct out reply;

/* The temporary file of an upload or move in progress: removed if the request fails. */
static char upload_temp[PATH_CAP];
static void drop_temp(void) {
    if (upload_temp[0]) unlink(upload_temp);
    upload_temp[0] = 0;
}

/* Reports a failure (errno, the call, the path inside the sandbox, a detail) and exits. */
static __attribute__((noreturn)) void fail(int err, const char *call, const char *path, const char *detail) {
    out_begin(&reply, ATOLL_AGENT_ERROR);
    out_num(&reply, err);
    out_str(&reply, call);
    out_str(&reply, path);
    out_str(&reply, detail);
    drop_temp();
    out_send(&reply);
    _exit(1);
}

static __attribute__((noreturn)) void failf(int err, const char *call, const char *path, const char *format, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, format);
    vsnprintf(detail, sizeof detail, format, ap);
    va_end(ap);
    fail(err, call, path, detail);
}

/* ------------------------------------------------------------------------------------------
 * Messages in.
 * ---------------------------------------------------------------------------------------- */

struct msg {
    uint16_t kind;
    uint32_t nnum, nstr;
    const int64_t *nums;
    const char **strs;
    int fds[8];
    int nfds;
};

/* Receives one message within `timeout_ms` (-1: no limit). Returns 1, 0 on end of stream, -1 on
 * timeout. A malformed message ends the agent: only the runtime can reach this socket. */
static int recv_msg(struct msg *m, int timeout_ms) {
    memset(m, 0, sizeof *m);
    struct pollfd p = {CONN, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return -1;
    if (r < 0) _exit(72);
    ssize_t size;
    do {
        size = recv(CONN, NULL, 0, MSG_PEEK | MSG_TRUNC);
    } while (size < 0 && errno == EINTR);
    if (size <= 0) return 0;
    if ((size_t)size > ATOLL_AGENT_MESSAGE_MAX || (size_t)size < sizeof(atoll_agent_header)) _exit(73);
    char *buf = xrealloc(NULL, (size_t)size + 1);
    char control[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = {buf, (size_t)size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t got;
    do {
        got = recvmsg(CONN, &mh, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got != size) _exit(74);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            if (m->nfds < 8)
                m->fds[m->nfds++] = fds[i];
            else
                close(fds[i]);
        }
    }
    atoll_agent_header h;
    memcpy(&h, buf, sizeof h);
    if (h.magic != ATOLL_AGENT_MAGIC || h.length != (uint32_t)size) _exit(75);
    size_t offset = sizeof h + (size_t)h.numbers * 8;
    if (offset > (size_t)size || h.strings > (uint32_t)size) _exit(75);
    m->kind = h.kind;
    m->nnum = h.numbers;
    m->nstr = h.strings;
    int64_t *nums = xrealloc(NULL, (h.numbers + 1) * sizeof *nums);
    memcpy(nums, buf + sizeof h, (size_t)h.numbers * 8);
    m->nums = nums;
    m->strs = xrealloc(NULL, (h.strings + 1) * sizeof *m->strs);
    buf[size] = 0;
    size_t pos = offset;
    for (uint32_t i = 0; i < h.strings; i++) {
        if (pos >= (size_t)size) _exit(75);
        const char *end = memchr(buf + pos, 0, (size_t)size - pos);
        if (!end) _exit(75);
        m->strs[i] = buf + pos;
        pos = (size_t)(end - buf) + 1;
    }
    if (pos != (size_t)size) _exit(75);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Small files of the sandbox (passwd, group): regular files only, never waited on.
 * ---------------------------------------------------------------------------------------- */

/* Reads a whole regular file of at most `limit` bytes (NUL-terminated); NULL with errno set. */
static char *read_small(const char *path, size_t limit) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    if ((size_t)st.st_size > limit) {
        close(fd);
        errno = EFBIG;
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = xrealloc(NULL, cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap > limit) {
                free(buf);
                close(fd);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    return buf;
}

/* ------------------------------------------------------------------------------------------
 * Accounts: the sandbox's own /etc/passwd and /etc/group, ids checked against its range.
 * ---------------------------------------------------------------------------------------- */

struct account {
    uint32_t uid, gid;
    char name[256];
    char home[PATH_CAP];
    char shell[PATH_CAP];
    uint32_t groups[MAX_GROUPS];
    int ngroups;
};

/* Splits a line into at most `max` ':'-separated fields in place; returns how many. */
static int split_fields(char *line, char **fields, int max) {
    int n = 0;
    fields[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == ':') {
            *p = 0;
            fields[n++] = p + 1;
        }
    }
    return n;
}

/* A decimal id: digits only, no sign, at most 10 digits; UINT64_MAX when not a number. */
static uint64_t parse_id(const char *s) {
    if (!*s || strlen(s) > 10) return UINT64_MAX;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return UINT64_MAX;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

static char *passwd_text, *group_text;

static void load_accounts(void) {
    if (!passwd_text) {
        passwd_text = read_small("/etc/passwd", 4u << 20);
        if (!passwd_text) passwd_text = strdup("");
    }
    if (!group_text) {
        group_text = read_small("/etc/group", 4u << 20);
        if (!group_text) group_text = strdup("");
    }
}

/* Calls `visit` with the fields of every well-formed line of `text` (a copy is split); stops when
 * it returns non-zero and returns that. */
static int each_line(const char *text, int want, int (*visit)(char **fields, void *ctx), void *ctx) {
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && p[0] != '#' && n < 65536) {
            char line[n + 1];
            memcpy(line, p, n);
            line[n] = 0;
            char *fields[8];
            if (split_fields(line, fields, want) == want) {
                int r = visit(fields, ctx);
                if (r) return r;
            }
        }
        p += n;
        if (*p) p++;
    }
    return 0;
}

struct find_user {
    const char *name; /* match by name, or */
    uint64_t uid;     /* by uid (UINT64_MAX: by name) */
    char fields[7][PATH_CAP];
};

static int match_user(char **f, void *ctx) {
    struct find_user *q = ctx;
    if (q->name ? strcmp(f[0], q->name) != 0 : parse_id(f[2]) != q->uid) return 0;
    for (int i = 0; i < 7; i++) snprintf(q->fields[i], PATH_CAP, "%s", f[i]);
    return 1;
}

struct member_groups {
    const char *user;
    struct account *a;
    const char *bad; /* a group listing the user whose gid is outside the range */
    char badname[256];
};

static int collect_group(char **f, void *ctx) {
    struct member_groups *q = ctx;
    char *members = f[3];
    for (char *tok = strtok(members, ","); tok; tok = strtok(NULL, ",")) {
        if (strcmp(tok, q->user) != 0) continue;
        uint64_t gid = parse_id(f[2]);
        if (gid >= ATOLL_SANDBOX_ID_COUNT) {
            snprintf(q->badname, sizeof q->badname, "%s", f[0]);
            q->bad = q->badname;
            return 1;
        }
        int seen = 0;
        for (int i = 0; i < q->a->ngroups; i++) seen |= q->a->groups[i] == (uint32_t)gid;
        if (!seen && q->a->ngroups < MAX_GROUPS) q->a->groups[q->a->ngroups++] = (uint32_t)gid;
    }
    return 0;
}

/* Resolves `spec` — a name, a uid, or uid:gid — as container runtimes do: a numeric uid needs no
 * entry (home "/"). Every id must be one the sandbox's user namespace maps (0..65535), whether it
 * came from the request or from the sandbox's own files: an unmapped id would make set*id fail
 * or, with -1, change nothing. Fails the request with the reason. */
static void resolve_user(const char *spec, struct account *a) {
    load_accounts();
    memset(a, 0, sizeof *a);
    struct find_user q = {.name = spec, .uid = UINT64_MAX};
    int found = *spec && each_line(passwd_text, 7, match_user, &q);
    uint64_t uid, gid;
    if (found) {
        uid = parse_id(q.fields[2]);
        gid = parse_id(q.fields[3]);
        if (uid >= ATOLL_SANDBOX_ID_COUNT || gid >= ATOLL_SANDBOX_ID_COUNT)
            failf(EINVAL, "resolve user", "/etc/passwd",
                  "user \"%.64s\" has uid %.16s and gid %.16s in /etc/passwd; a sandbox's ids are 0 to 65535", spec, q.fields[2],
                  q.fields[3]);
    } else {
        char copy[64];
        /* "root" is uid 0 also where no /etc/passwd names it (a minimal image), as in runc. */
        snprintf(copy, sizeof copy, "%s", strcmp(spec, "root") == 0 ? "0" : spec);
        char *colon = strchr(copy, ':');
        if (colon) *colon = 0;
        uid = parse_id(copy);
        if (uid == UINT64_MAX || strlen(spec) >= sizeof copy)
            failf(ENOENT, "resolve user", "/etc/passwd", "user \"%.64s\" does not exist in the sandbox's /etc/passwd", spec);
        if (uid >= ATOLL_SANDBOX_ID_COUNT) failf(EINVAL, "resolve user", "", "uid %.16s is outside the sandbox's ids (0 to 65535)", copy);
        q.name = NULL;
        q.uid = uid;
        int known = each_line(passwd_text, 7, match_user, &q);
        if (colon && parse_id(colon + 1) == UINT64_MAX) failf(EINVAL, "resolve user", "", "invalid group in user \"%.64s\"", spec);
        gid = colon ? parse_id(colon + 1) : known ? parse_id(q.fields[3]) : uid;
        if (gid >= ATOLL_SANDBOX_ID_COUNT)
            failf(EINVAL, "resolve user", "", "the group of user \"%.64s\" is outside the sandbox's ids (0 to 65535)", spec);
        if (!known) {
            snprintf(q.fields[0], PATH_CAP, "%s", strcmp(spec, "root") == 0 ? "root" : copy);
            snprintf(q.fields[5], PATH_CAP, "/");
            snprintf(q.fields[6], PATH_CAP, "/bin/sh");
        }
    }
    a->uid = (uint32_t)uid;
    a->gid = (uint32_t)gid;
    snprintf(a->name, sizeof a->name, "%.255s", q.fields[0]);
    snprintf(a->home, sizeof a->home, "%s", q.fields[5][0] == '/' ? q.fields[5] : "/");
    snprintf(a->shell, sizeof a->shell, "%s", q.fields[6][0] ? q.fields[6] : "/bin/sh");
    a->groups[a->ngroups++] = a->gid;
    struct member_groups g = {.user = a->name, .a = a};
    each_line(group_text, 4, collect_group, &g);
    if (g.bad)
        failf(EINVAL, "resolve user", "/etc/group", "group \"%.64s\" of user \"%.64s\" has a gid outside the sandbox's ids (0 to 65535)",
              g.bad, a->name);
}

struct find_name {
    uint64_t id;
    char name[256];
};

static int match_id(char **f, void *ctx) {
    struct find_name *q = ctx;
    if (parse_id(f[2]) != q->id) return 0;
    snprintf(q->name, sizeof q->name, "%s", f[0]);
    return 1;
}

/* The name of uid/gid `id` (or the number). The last answer for each is kept: the entries of a
 * listing mostly share their owner, and every lookup is a scan of the file. */
static void id_name(int group, uint32_t id, char *out, size_t cap) {
    static struct {
        int valid;
        uint32_t id;
        char name[256];
    } last[2];
    if (!last[group].valid || last[group].id != id) {
        load_accounts();
        struct find_name q = {.id = id};
        if (each_line(group ? group_text : passwd_text, group ? 4 : 7, match_id, &q))
            snprintf(last[group].name, 256, "%s", q.name);
        else
            snprintf(last[group].name, 256, "%u", id);
        last[group].id = id;
        last[group].valid = 1;
    }
    snprintf(out, cap, "%s", last[group].name);
}

struct find_gid {
    const char *name;
    uint64_t gid;
};

static int match_group(char **f, void *ctx) {
    struct find_gid *q = ctx;
    if (strcmp(f[0], q->name) != 0) return 0;
    q->gid = parse_id(f[2]);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Paths.
 * ---------------------------------------------------------------------------------------- */

/* An absolute, lexically normalised path: relative paths start at `home`; ".." stops at "/".
 * (Resolution then happens in the kernel, inside the sandbox's root.) */
static void normalize(const char *home, const char *path, char *out) {
    if (!*path) fail(EINVAL, "path", "", "path is empty");
    if (strlen(path) >= PATH_CAP || strlen(home) >= PATH_CAP) fail(ENAMETOOLONG, "path", "", "path is too long");
    char joined[2 * PATH_CAP + 2];
    snprintf(joined, sizeof joined, "%s/%s", path[0] == '/' ? "" : home, path);
    size_t len = 0;
    out[0] = 0;
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0) continue;
        if (strcmp(part, "..") == 0) {
            while (len > 0 && out[len - 1] != '/') len--;
            if (len > 0) len--;
            out[len] = 0;
            continue;
        }
        size_t n = strlen(part);
        if (len + 1 + n >= PATH_CAP) fail(ENAMETOOLONG, "path", path, "path is too long");
        out[len++] = '/';
        memcpy(out + len, part, n);
        len += n;
        out[len] = 0;
    }
    if (len == 0) strcpy(out, "/");
}

/* Splits an absolute path into its parent and last component (parent of "/a" is "/"). */
static void split_path(const char *abs, char *parent, char *name) {
    const char *slash = strrchr(abs, '/');
    size_t plen = (size_t)(slash - abs);
    if (plen == 0)
        strcpy(parent, "/");
    else {
        memcpy(parent, abs, plen);
        parent[plen] = 0;
    }
    snprintf(name, NAME_MAX + 1, "%s", slash + 1);
}

/* ------------------------------------------------------------------------------------------
 * Entries.
 * ---------------------------------------------------------------------------------------- */

static void add_entry(struct out *o, const char *name, const char *path, const struct stat *st, int dir, const char *rel) {
    out_num(o, st->st_mode);
    out_num(o, st->st_uid);
    out_num(o, st->st_gid);
    out_num(o, st->st_size);
    out_num(o, st->st_mtim.tv_sec);
    out_num(o, st->st_mtim.tv_nsec);
    out_num(o, (int64_t)st->st_nlink);
    out_str(o, name);
    out_str(o, path);
    char target[PATH_CAP] = "";
    if (S_ISLNK(st->st_mode)) {
        ssize_t n = readlinkat(dir, rel, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
    }
    out_str(o, target);
    char owner[256], group[256];
    id_name(0, st->st_uid, owner, sizeof owner);
    id_name(1, st->st_gid, group, sizeof group);
    out_str(o, owner);
    out_str(o, group);
}

/* Replies with the entry of `abs` itself (a final symlink not followed). */
static __attribute__((noreturn)) void reply_entry(const char *abs) {
    struct stat st;
    if (fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "lstat", abs, "");
    char parent[PATH_CAP], name[NAME_MAX + 1];
    split_path(abs, parent, name);
    out_begin(&reply, ATOLL_AGENT_ENTRY);
    add_entry(&reply, strcmp(abs, "/") == 0 ? "/" : name, abs, &st, AT_FDCWD, abs);
    out_send(&reply);
    _exit(0);
}

static __attribute__((noreturn)) void reply_done(int64_t count, int truncated, const char *home) {
    out_begin(&reply, ATOLL_AGENT_DONE);
    out_num(&reply, count);
    out_num(&reply, truncated);
    out_str(&reply, home);
    out_send(&reply);
    _exit(0);
}

/* ------------------------------------------------------------------------------------------
 * Exec: the agent becomes the process (execve in place), so the sandbox holds nothing extra
 * while it runs; PID 1, its parent, reports how it ended (see atoll-init.c).
 * ---------------------------------------------------------------------------------------- */

static const char *env_value(char **envp, const char *key) {
    size_t n = strlen(key);
    const char *found = NULL;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=') found = *e + n + 1;
    return found;
}

/* The executable `file` names: itself when it has a slash, else the first match on PATH that
 * the (already switched) user may execute, as execvp would find it. */
static int find_executable(const char *file, char **envp, char *out) {
    if (strchr(file, '/')) {
        snprintf(out, PATH_CAP, "%s", file);
        return 0;
    }
    const char *path = env_value(envp, "PATH");
    if (!path) path = DEFAULT_PATH;
    int saw_eacces = 0;
    for (const char *p = path;;) {
        const char *end = strchrnul(p, ':');
        int n = end == p ? snprintf(out, PATH_CAP, "./%s", file) : snprintf(out, PATH_CAP, "%.*s/%s", (int)(end - p), p, file);
        struct stat st;
        if (n > 0 && n < PATH_CAP && stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0) return 0;
            saw_eacces = 1;
        }
        if (!*end) break;
        p = end + 1;
    }
    return saw_eacces ? EACCES : ENOENT;
}

/* A new terminal of the sandbox's own devpts instance (never a path the sandbox could have
 * replaced: /dev/pts is a mount it cannot change, and the other end is opened from the master with
 * TIOCGPTPEER, not by name). Returns the master; `*slave` gets the other end. */
static int open_terminal(int64_t rows, int64_t cols, int *slave) {
    if (rows < 1 || cols < 1 || rows > ATOLL_PTY_MAX_SIZE || cols > ATOLL_PTY_MAX_SIZE)
        failf(EINVAL, "pty", "", "terminal size %lldx%lld is outside 1..%d", (long long)cols, (long long)rows, ATOLL_PTY_MAX_SIZE);
    int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) fail(errno, "open", "/dev/pts/ptmx", "");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(errno, "ioctl(TIOCSPTLCK)", "/dev/pts/ptmx", "");
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0) fail(errno, "ioctl(TIOCSWINSZ)", "/dev/pts/ptmx", "");
    *slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) fail(errno, "ioctl(TIOCGPTPEER)", "/dev/pts/ptmx", "");
    return master;
}

static __attribute__((noreturn)) void do_exec(struct msg *m) {
    int pty = m->nnum >= 3 && (m->nums[2] & ATOLL_EXEC_PTY);
    if (m->nnum < (pty ? 5 : 3) || m->nfds != (pty ? 0 : 3)) fail(EINVAL, "exec", "", "malformed exec request");
    /* From here on, what the runtime sends is for PID 1 (signals for the process group, or the
     * runtime hanging up). The signal's sender pid tells PID 1 which connection is ours. */
    kill(1, ATOLL_AGENT_READY_SIGNAL);
    int64_t argc = m->nums[0], envc = m->nums[1], flags = m->nums[2];
    if (argc < 1 || envc < 0 || (uint64_t)m->nstr != 3 + (uint64_t)argc + (uint64_t)envc)
        fail(EINVAL, "exec", "", "malformed exec request");
    struct account a;
    resolve_user(m->strs[0], &a);
    char **argv = xrealloc(NULL, (size_t)(argc + 1) * sizeof *argv);
    for (int64_t i = 0; i < argc; i++) argv[i] = (char *)m->strs[3 + i];
    argv[argc] = NULL;
    char **envp = xrealloc(NULL, (size_t)(envc + 5) * sizeof *envp);
    int64_t k = 0;
    for (int64_t i = 0; i < envc; i++) envp[k++] = (char *)m->strs[3 + argc + i];
    envp[k] = NULL;
    if (flags & ATOLL_EXEC_ACCOUNT_ENV) {
        const char *keys[4] = {"HOME", "USER", "LOGNAME", "SHELL"};
        const char *values[4] = {a.home, a.name, a.name, a.shell};
        for (int i = 0; i < 4; i++) {
            if (env_value(envp, keys[i])) continue;
            size_t n = strlen(keys[i]) + strlen(values[i]) + 2;
            envp[k] = xrealloc(NULL, n);
            snprintf(envp[k], n, "%s=%s", keys[i], values[i]);
            envp[++k] = NULL;
        }
    }
    char cwd[PATH_CAP];
    normalize(a.home, m->strs[1][0] ? m->strs[1] : a.home, cwd);

    int master = -1;
    if (pty) {
        int slave;
        master = open_terminal(m->nums[3], m->nums[4], &slave);
        /* The user owns its terminal, as login(1) arranges it (group tty kept from devpts). */
        if (fchown(slave, a.uid, (gid_t)-1) < 0) fail(errno, "fchown", "terminal", "");
        for (int i = 0; i < 3; i++) m->fds[i] = slave;
    }

    /* A session of its own, so that a timeout kills everything the process starts. */
    if (setsid() < 0) fail(errno, "setsid", "", "");
    if (pty && ioctl(m->fds[0], TIOCSCTTY, 0) < 0) fail(errno, "ioctl(TIOCSCTTY)", "terminal", "");
    for (int i = 0; i < 3; i++)
        if (dup2(m->fds[i], i) < 0) fail(errno, "dup2", "stdio", "");
    if (syscall(SYS_setgroups, (size_t)a.ngroups, a.groups) < 0) fail(errno, "setgroups", a.name, "");
    if (syscall(SYS_setresgid, a.gid, a.gid, a.gid) < 0) fail(errno, "setresgid", a.name, "");
    if (syscall(SYS_setresuid, a.uid, a.uid, a.uid) < 0) fail(errno, "setresuid", a.name, "");
    /* Checked, not assumed: the ids must be exactly the requested ones. */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || ru != a.uid || eu != a.uid || su != a.uid) fail(EPERM, "setresuid(check)", a.name, "");
    if (getresgid(&rg, &eg, &sg) < 0 || rg != a.gid || eg != a.gid || sg != a.gid) fail(EPERM, "setresgid(check)", a.name, "");
    if (a.uid != 0) {
        /* Changing from root to another uid cleared the permitted and effective sets already;
         * say so explicitly, and clear the inheritable set too. */
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        if (syscall(SYS_capset, &hdr, data) < 0) fail(errno, "capset", a.name, "");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", "", "");
    if (chdir(cwd) < 0) fail(errno, "chdir", cwd, "");
    char executable[PATH_CAP];
    int missing = find_executable(m->strs[2], envp, executable);
    if (missing) fail(missing, "execve", m->strs[2], "");
    umask(022);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    /* Nothing of the agent survives the exec but stdio; the connection closes with it. */
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    out_begin(&reply, ATOLL_AGENT_STARTED);
    out_num(&reply, getpid());
    out_send_fd(&reply, master); /* the master is close-on-exec here: only the runtime keeps it */
    execve(executable, argv, envp);
    fail(errno, "execve", executable, "");
}

/* ------------------------------------------------------------------------------------------
 * Files.
 * ---------------------------------------------------------------------------------------- */

struct file_request {
    int op, flags;
    int64_t mode, limit;
    struct account owner;
    char path[PATH_CAP];
    const char *raw_path, *second, *third;
    int fd;
};

/* Makes `abs` and its missing parents; what it creates gets `mode` (not masked) and the owner. */
static void mkdir_parents(const char *abs, mode_t mode, const struct account *owner) {
    char prefix[PATH_CAP];
    size_t len = strlen(abs);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && abs[i] != '/') continue;
        memcpy(prefix, abs, i);
        prefix[i] = 0;
        if (mkdir(prefix, mode) == 0) {
            int fd = open(prefix, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) fail(errno, "open", prefix, "");
            if (fchown(fd, owner->uid, owner->gid) < 0) fail(errno, "fchown", prefix, "");
            if (fchmod(fd, mode) < 0) fail(errno, "fchmod", prefix, "");
            close(fd);
        } else if (errno == EEXIST) {
            struct stat st;
            if (stat(prefix, &st) < 0) fail(errno, "stat", prefix, "");
            if (!S_ISDIR(st.st_mode)) fail(ENOTDIR, "mkdir", prefix, "");
        } else {
            fail(errno, "mkdir", prefix, "");
        }
    }
}

static void do_stat(struct file_request *r) {
    reply_entry(r->path);
}

static void do_list(struct file_request *r) {
    int fd = open(r->path, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", r->path, "");
    DIR *d = fdopendir(fd);
    if (!d) fail(errno, "fdopendir", r->path, "");
    struct out batch = {0};
    out_begin(&batch, ATOLL_AGENT_ENTRY);
    int64_t count = 0, limit = r->limit > 0 ? r->limit : 100000;
    int truncated = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (count >= limit) {
            truncated = 1;
            break;
        }
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        char child[PATH_CAP];
        if ((size_t)snprintf(child, sizeof child, "%s/%s", strcmp(r->path, "/") == 0 ? "" : r->path, e->d_name) >= sizeof child) {
            truncated = 1;
            continue;
        }
        add_entry(&batch, e->d_name, child, &st, fd, e->d_name);
        count++;
        if (batch.slen > ATOLL_AGENT_BATCH_BYTES) {
            out_send(&batch);
            out_begin(&batch, ATOLL_AGENT_ENTRY);
        }
    }
    if (batch.nnum > 0) out_send(&batch);
    reply_done(count, truncated, r->owner.home);
}

/* Copies `from` to `to` until EOF; returns bytes copied, or -errno of the failed side (reads
 * fail as -1 - errno to tell them apart). At most `limit` bytes are read when limit >= 0. */
static int64_t copy_fd(int from, int to, int64_t limit, int *read_failed) {
    static char buf[128 * 1024];
    int64_t total = 0;
    *read_failed = 0;
    for (;;) {
        size_t want = sizeof buf;
        if (limit >= 0 && (int64_t)want > limit - total) want = (size_t)(limit - total);
        if (want == 0) break;
        ssize_t n = read(from, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *read_failed = 1;
            return -errno;
        }
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -errno;
            off += w;
        }
        total += n;
    }
    return total;
}

static void do_read(struct file_request *r) {
    if (r->fd < 0) fail(EINVAL, "read", r->path, "no pipe for the data");
    /* O_NONBLOCK: a FIFO or device planted in place of a file is not waited on; it is refused
     * below as not a regular file. */
    int fd = open(r->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", r->path, "");
    struct stat st;
    if (fstat(fd, &st) < 0) fail(errno, "fstat", r->path, "");
    if (S_ISDIR(st.st_mode)) fail(EISDIR, "read", r->path, "is a directory");
    if (!S_ISREG(st.st_mode)) fail(EINVAL, "read", r->path, "not a regular file");
    if (r->limit >= 0 && st.st_size > r->limit) failf(EFBIG, "read", r->path, "larger than %lld bytes", (long long)r->limit);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    /* The first read happens before the answer: a file the kernel lets the sandbox open but not
     * read (/proc/<pid>/stack) is an error the caller gets as such, not a cut-off transfer. */
    static char first[64 * 1024];
    size_t want = r->limit >= 0 && r->limit < (int64_t)sizeof first ? (size_t)r->limit : sizeof first;
    ssize_t got;
    do {
        got = read(fd, first, want);
    } while (got < 0 && errno == EINTR);
    if (got < 0) fail(errno, "read", r->path, "");
    out_begin(&reply, ATOLL_AGENT_ENTRY);
    char parent[PATH_CAP], name[NAME_MAX + 1];
    split_path(r->path, parent, name);
    add_entry(&reply, name, r->path, &st, AT_FDCWD, r->path);
    out_send(&reply);
    for (ssize_t off = 0; off < got;) {
        ssize_t w = write(r->fd, first + off, (size_t)(got - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) _exit(0); /* the runtime stopped reading */
        off += w;
    }
    int read_failed;
    int64_t n = got == 0 ? 0 : copy_fd(fd, r->fd, r->limit >= 0 ? r->limit - got : -1, &read_failed);
    close(r->fd);
    if (n < 0) {
        if (read_failed) fail((int)-n, "read", r->path, "");
        _exit(0); /* the runtime stopped reading */
    }
    reply_done(n + got, 0, r->owner.home);
}

/* A new temporary file (0600) in the directory of `target`, recorded in `upload_temp` so that a
 * failure removes it; renamed over the target when it is complete. */
static int open_temp_beside(const char *target, const char *purpose) {
    char dir[PATH_CAP], name[NAME_MAX + 1];
    split_path(target, dir, name);
    if (strlen(dir) + strlen(purpose) + 16 >= sizeof upload_temp) fail(ENAMETOOLONG, purpose, target, "");
    snprintf(upload_temp, sizeof upload_temp, "%.4000s/.atoll-%.8s-XXXXXX", strcmp(dir, "/") == 0 ? "" : dir, purpose);
    int fd = mkostemp(upload_temp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        upload_temp[0] = 0;
        fail(e, "open", target, "");
    }
    return fd;
}

static void do_write(struct file_request *r) {
    if (r->fd < 0) fail(EINVAL, "write", r->path, "no pipe for the data");
    if (strcmp(r->path, "/") == 0) fail(EISDIR, "write", r->path, "cannot write to the root directory");
    char parent[PATH_CAP], name[NAME_MAX + 1];
    split_path(r->path, parent, name);
    if (r->flags & ATOLL_FILE_PARENTS) mkdir_parents(parent, 0755, &r->owner);
    /* A symlink at the path is followed (inside the sandbox): the file it names is replaced. */
    char target[PATH_CAP];
    struct stat st;
    int exists = fstatat(AT_FDCWD, r->path, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && S_ISLNK(st.st_mode)) {
        if (!realpath(r->path, target)) fail(errno, "realpath", r->path, "the symbolic link leads nowhere inside the sandbox");
        exists = stat(target, &st) == 0;
    } else {
        snprintf(target, sizeof target, "%s", r->path);
    }
    if (exists && (r->flags & ATOLL_FILE_EXCLUSIVE)) fail(EEXIST, "write", r->path, "");
    if (exists && S_ISDIR(st.st_mode)) fail(EISDIR, "write", r->path, "is a directory");
    if (exists && !S_ISREG(st.st_mode)) fail(EINVAL, "write", r->path, "not a regular file");
    int fd = open_temp_beside(target, "upload");
    int read_failed;
    int64_t n = copy_fd(r->fd, fd, -1, &read_failed);
    close(r->fd);
    if (n < 0) {
        if (read_failed) {
            drop_temp(); /* the runtime broke off */
            _exit(0);
        }
        fail((int)-n, "write", r->path, (int)-n == ENOSPC ? "the sandbox's disk is full" : "");
    }
    /* EOF can also mean the runtime was cut off mid-upload: only its COMMIT says every byte
     * arrived, and only then is the target replaced. */
    struct msg c;
    if (recv_msg(&c, COMMIT_WAIT_MS) != 1 || c.kind != ATOLL_AGENT_COMMIT || c.nnum < 1) {
        drop_temp();
        _exit(0);
    }
    if (c.nums[0] != n) failf(EIO, "write", r->path, "received %lld bytes of %lld", (long long)n, (long long)c.nums[0]);
    uid_t uid = exists ? st.st_uid : r->owner.uid;
    gid_t gid = exists ? st.st_gid : r->owner.gid;
    mode_t mode = exists ? (st.st_mode & 07777) : (mode_t)(r->mode >= 0 ? r->mode & 07777 : 0644);
    if (fchown(fd, uid, gid) < 0) fail(errno, "fchown", r->path, "");
    if (fchmod(fd, mode) < 0) fail(errno, "fchmod", r->path, "");
    if (close(fd) < 0) fail(errno, "close", r->path, errno == ENOSPC ? "the sandbox's disk is full" : "");
    int renamed = (r->flags & ATOLL_FILE_EXCLUSIVE) ? renameat2(AT_FDCWD, upload_temp, AT_FDCWD, target, RENAME_NOREPLACE)
                                                    : rename(upload_temp, target);
    if (renamed < 0) fail(errno, "rename", r->path, "");
    upload_temp[0] = 0;
    reply_entry(r->path);
}

static void do_mkdir(struct file_request *r) {
    mkdir_parents(r->path, (mode_t)(r->mode >= 0 ? r->mode & 07777 : 0755), &r->owner);
    reply_entry(r->path);
}

/* Removes the directory tree at `abs` without following a symlink and without holding more than
 * two descriptors, however deep it is: it descends one directory at a time, removes what is not
 * a directory, climbs back through ".." and removes the emptied directory. It stays on the tree's
 * filesystem (a mount point inside fails with EBUSY). Concurrent changes by the sandbox can only
 * redirect it to other paths of the sandbox itself, which its root may remove anyway. */
static int64_t remove_tree(const char *abs) {
    int cur = open(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cur < 0) fail(errno, "open", abs, "");
    struct stat top;
    if (fstat(cur, &top) < 0) fail(errno, "fstat", abs, "");
    char **names = NULL;
    size_t depth = 0, cap = 0;
    int64_t removed = 0;
    for (uint64_t rounds = 0;; rounds++) {
        if (rounds > 100000000ULL) fail(EAGAIN, "delete", abs, "the tree keeps changing while it is removed");
        int copy = fcntl(cur, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) fail(errno, "fcntl(F_DUPFD)", abs, "");
        DIR *d = fdopendir(copy);
        if (!d) fail(errno, "fdopendir", abs, "");
        rewinddir(d);
        int descended = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            struct stat st;
            if (fstatat(cur, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
            if (S_ISDIR(st.st_mode) && st.st_dev == top.st_dev) {
                if (depth >= ATOLL_AGENT_DELETE_DEPTH) failf(ELOOP, "delete", abs, "more than %d levels deep", ATOLL_AGENT_DELETE_DEPTH);
                int next = openat(cur, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0) {
                    if (errno == ENOENT) continue;
                    failf(errno, "openat", abs, "below it: %.200s", e->d_name);
                }
                if (depth == cap) {
                    cap = cap ? cap * 2 : 64;
                    names = xrealloc(names, cap * sizeof *names);
                }
                names[depth++] = strdup(e->d_name);
                close(cur);
                cur = next;
                descended = 1;
                break;
            }
            if (unlinkat(cur, e->d_name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
                failf(errno, "unlinkat", abs, "below it: %.200s", e->d_name);
            removed++;
        }
        closedir(d);
        if (descended) continue;
        if (depth == 0) break;
        int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (up < 0) fail(errno, "openat(..)", abs, "");
        close(cur);
        cur = up;
        char *name = names[--depth];
        if (unlinkat(cur, name, AT_REMOVEDIR) < 0 && errno != ENOENT) failf(errno, "unlinkat", abs, "below it: %.200s", name);
        removed++;
        free(name);
    }
    close(cur);
    free(names);
    if (rmdir(abs) < 0 && errno != ENOENT) fail(errno, "rmdir", abs, "");
    return removed + 1;
}

static void do_delete(struct file_request *r) {
    if (strcmp(r->path, "/") == 0) fail(EINVAL, "delete", "/", "refusing to delete the sandbox's root directory");
    struct stat st;
    if (fstatat(AT_FDCWD, r->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT && (r->flags & ATOLL_FILE_MISSING_OK)) reply_done(0, 0, r->owner.home);
        fail(errno, "lstat", r->path, "");
    }
    int64_t removed = 1;
    if (S_ISDIR(st.st_mode)) {
        if (r->flags & ATOLL_FILE_RECURSIVE)
            removed = remove_tree(r->path);
        else if (rmdir(r->path) < 0)
            fail(errno, "rmdir", r->path, "");
    } else if (unlink(r->path) < 0) {
        fail(errno, "unlink", r->path, "");
    }
    reply_done(removed, 0, r->owner.home);
}

static void do_move(struct file_request *r) {
    char to[PATH_CAP];
    normalize(r->owner.home, r->second, to);
    if (rename(r->path, to) == 0) reply_done(1, 0, r->owner.home);
    if (errno != EXDEV) fail(errno, "rename", r->path, to);
    /* Across filesystems (e.g. from /tmp, a mount of its own): regular files are copied. */
    int from = open(r->path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (from < 0) fail(errno, "open", r->path, "");
    struct stat st;
    if (fstat(from, &st) < 0) fail(errno, "fstat", r->path, "");
    if (!S_ISREG(st.st_mode)) fail(EXDEV, "rename", r->path, "only files can move between filesystems");
    int fd = open_temp_beside(to, "move");
    int read_failed;
    int64_t n = copy_fd(from, fd, -1, &read_failed);
    if (n < 0) fail((int)-n, read_failed ? "read" : "write", read_failed ? r->path : to, "");
    if (fchown(fd, st.st_uid, st.st_gid) < 0) fail(errno, "fchown", to, "");
    if (fchmod(fd, st.st_mode & 07777) < 0) fail(errno, "fchmod", to, "");
    close(fd);
    if (rename(upload_temp, to) < 0) fail(errno, "rename", to, "");
    upload_temp[0] = 0;
    if (unlink(r->path) < 0) fail(errno, "unlink", r->path, "");
    reply_done(1, 0, r->owner.home);
}

static void do_setperm(struct file_request *r) {
    if (r->mode >= 0) {
        if (r->mode > 07777) fail(EINVAL, "chmod", r->path, "mode must be octal permissions up to 7777");
        if (chmod(r->path, (mode_t)r->mode) < 0) fail(errno, "chmod", r->path, "");
    }
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (r->second[0]) {
        struct account a;
        resolve_user(r->second, &a);
        uid = a.uid;
    }
    if (r->third[0]) {
        uint64_t g = parse_id(r->third);
        if (g == UINT64_MAX) {
            load_accounts();
            struct find_gid q = {.name = r->third, .gid = UINT64_MAX};
            if (!each_line(group_text, 4, match_group, &q))
                failf(ENOENT, "resolve group", "/etc/group", "group \"%.64s\" does not exist in the sandbox", r->third);
            g = q.gid;
        }
        if (g >= ATOLL_SANDBOX_ID_COUNT)
            failf(EINVAL, "resolve group", "", "group \"%.64s\" is outside the sandbox's ids (0 to 65535)", r->third);
        gid = (gid_t)g;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchownat(AT_FDCWD, r->path, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        fail(errno, "chown", r->path, "");
    reply_entry(r->path);
}

/* The directories a walk from "/" does not enter. */
static int skipped_root(const char *path) {
    return strcmp(path, "/proc") == 0 || strcmp(path, "/sys") == 0 || strcmp(path, "/dev") == 0;
}

/* An iterative depth-first walk below `abs`: one open directory per level, at most
 * ATOLL_AGENT_WALK_DEPTH levels and ATOLL_AGENT_WALK_ENTRIES entries; symlinks are not followed.
 * `visit` sees every entry; returns non-zero when the walk was cut short by a bound. */
static int walk(const char *abs, void (*visit)(int dir, const char *name, const char *path, const struct stat *st, void *ctx), void *ctx) {
    struct frame {
        DIR *d;
        size_t len;
    } frames[ATOLL_AGENT_WALK_DEPTH];
    char path[PATH_CAP];
    int fd = open(abs, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", abs, "");
    frames[0].d = fdopendir(fd);
    if (!frames[0].d) fail(errno, "fdopendir", abs, "");
    snprintf(path, sizeof path, "%s", strcmp(abs, "/") == 0 ? "" : abs);
    frames[0].len = strlen(path);
    int depth = 1, truncated = 0;
    long visited = 0;
    while (depth > 0) {
        struct frame *top = &frames[depth - 1];
        struct dirent *e = readdir(top->d);
        if (!e) {
            closedir(top->d);
            depth--;
            continue;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (++visited > ATOLL_AGENT_WALK_ENTRIES) {
            truncated = 1;
            break;
        }
        size_t n = strlen(e->d_name);
        if (top->len + 1 + n >= sizeof path) {
            truncated = 1;
            continue;
        }
        path[top->len] = '/';
        memcpy(path + top->len + 1, e->d_name, n + 1);
        struct stat st;
        if (fstatat(dirfd(top->d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        visit(dirfd(top->d), e->d_name, path, &st, ctx);
        if (!S_ISDIR(st.st_mode) || skipped_root(path)) continue;
        if (depth >= ATOLL_AGENT_WALK_DEPTH) {
            truncated = 1;
            continue;
        }
        int child = openat(dirfd(top->d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (child < 0) continue;
        DIR *d = fdopendir(child);
        if (!d) {
            close(child);
            continue;
        }
        frames[depth].d = d;
        frames[depth].len = top->len + 1 + n;
        depth++;
    }
    while (depth > 0) closedir(frames[--depth].d);
    return truncated;
}

struct search_ctx {
    const char *pattern;
    struct out batch;
    int64_t count, limit;
    int truncated;
};

static void search_visit(int dir, const char *name, const char *path, const struct stat *st, void *ctx) {
    (void)dir;
    (void)st;
    struct search_ctx *s = ctx;
    if (fnmatch(s->pattern, name, 0) != 0) return;
    if (s->count >= s->limit) {
        s->truncated = 1;
        return;
    }
    out_str(&s->batch, path);
    s->count++;
    if (s->batch.slen > ATOLL_AGENT_BATCH_BYTES) {
        out_send(&s->batch);
        out_begin(&s->batch, ATOLL_AGENT_PATH);
    }
}

static void do_search(struct file_request *r) {
    if (!r->second[0]) fail(EINVAL, "search", r->path, "pattern is empty");
    struct search_ctx s = {.pattern = r->second, .limit = r->limit > 0 ? r->limit : 100000};
    out_begin(&s.batch, ATOLL_AGENT_PATH);
    int truncated = walk(r->path, search_visit, &s);
    if (s.batch.nstr > 0) out_send(&s.batch);
    reply_done(s.count, truncated || s.truncated, r->owner.home);
}

struct find_ctx {
    const char *pattern;
    size_t plen;
    struct out batch;
    int64_t count, limit;
    int truncated;
};

/* The lines of a regular file (at most ATOLL_AGENT_FIND_FILE_MAX bytes, no NUL byte) that contain
 * the pattern. Opened relative to its directory without following a link or waiting on a FIFO. */
static void scan_file(int dir, const char *name, const char *path, struct find_ctx *f) {
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)ATOLL_AGENT_FIND_FILE_MAX) {
        close(fd);
        return;
    }
    char *buf = xrealloc(NULL, (size_t)st.st_size + 1);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == (size_t)st.st_size) break;
    }
    close(fd);
    if (memchr(buf, 0, len)) {
        free(buf);
        return;
    }
    int64_t line = 1;
    for (size_t start = 0; start <= len;) {
        const char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - buf) : len;
        if (memmem(buf + start, end - start, f->pattern, f->plen)) {
            if (f->count >= f->limit) {
                f->truncated = 1;
                break;
            }
            out_num(&f->batch, line);
            out_str(&f->batch, path);
            out_strn(&f->batch, buf + start, end - start > 16384 ? 16384 : end - start);
            f->count++;
            if (f->batch.slen > ATOLL_AGENT_BATCH_BYTES) {
                out_send(&f->batch);
                out_begin(&f->batch, ATOLL_AGENT_MATCH);
            }
        }
        if (!nl) break;
        start = end + 1;
        line++;
    }
    free(buf);
}

static void find_visit(int dir, const char *name, const char *path, const struct stat *st, void *ctx) {
    if (S_ISREG(st->st_mode)) scan_file(dir, name, path, ctx);
}

static void do_find(struct file_request *r) {
    if (!r->second[0]) fail(EINVAL, "find", r->path, "pattern is empty");
    struct find_ctx f = {.pattern = r->second, .plen = strlen(r->second), .limit = r->limit > 0 ? r->limit : 100000};
    out_begin(&f.batch, ATOLL_AGENT_MATCH);
    struct stat st;
    if (stat(r->path, &st) < 0) fail(errno, "stat", r->path, "");
    int truncated = 0;
    if (S_ISDIR(st.st_mode)) {
        truncated = walk(r->path, find_visit, &f);
    } else {
        char parent[PATH_CAP], name[NAME_MAX + 1];
        split_path(r->path, parent, name);
        int dir = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) fail(errno, "open", parent, "");
        scan_file(dir, name, r->path, &f);
        close(dir);
    }
    if (f.batch.nnum > 0) out_send(&f.batch);
    reply_done(f.count, truncated || f.truncated, r->owner.home);
}

static void do_mkfifo(struct file_request *r) {
    if (mkfifo(r->path, (mode_t)(r->mode >= 0 ? r->mode & 0777 : 0600)) < 0) fail(errno, "mkfifo", r->path, "");
    if (fchownat(AT_FDCWD, r->path, r->owner.uid, r->owner.gid, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "chown", r->path, "");
    reply_done(1, 0, r->owner.home);
}

static void do_fifo_write(struct file_request *r) {
    int fd = open(r->path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", r->path, errno == ENXIO ? "nothing reads the FIFO" : "");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) fail(EINVAL, "write", r->path, "not a FIFO");
    size_t n = strlen(r->second);
    ssize_t w = write(fd, r->second, n);
    if (w != (ssize_t)n) fail(w < 0 ? errno : EAGAIN, "write", r->path, "");
    reply_done((int64_t)n, 0, r->owner.home);
}

/* DONE with `fd` handed over (the runtime checks what it is before using it). */
static __attribute__((noreturn)) void reply_descriptor(int fd, const char *home) {
    out_begin(&reply, ATOLL_AGENT_DONE);
    out_num(&reply, 1);
    out_num(&reply, 0);
    out_str(&reply, home);
    out_send_fd(&reply, fd);
    _exit(0);
}

static void do_fifo_open(struct file_request *r) {
    if (r->mode >= 0) {
        if (mkfifo(r->path, (mode_t)(r->mode & 0777)) < 0) fail(errno, "mkfifo", r->path, "");
        if (fchownat(AT_FDCWD, r->path, r->owner.uid, r->owner.gid, AT_SYMLINK_NOFOLLOW) < 0) fail(errno, "chown", r->path, "");
    }
    int fd = open(r->path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", r->path, "");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) fail(EINVAL, "open", r->path, "not a FIFO");
    reply_descriptor(fd, r->owner.home);
}

static void do_open_read(struct file_request *r) {
    /* O_NONBLOCK: a FIFO planted in place of the file is refused below, not waited on. */
    int fd = open(r->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) fail(errno, "open", r->path, "");
    struct stat st;
    if (fstat(fd, &st) < 0) fail(errno, "fstat", r->path, "");
    if (!S_ISREG(st.st_mode)) fail(EINVAL, "open", r->path, "not a regular file");
    reply_descriptor(fd, r->owner.home);
}

static void do_account(struct file_request *r) {
    out_begin(&reply, ATOLL_AGENT_ACCOUNT);
    out_num(&reply, r->owner.uid);
    out_num(&reply, r->owner.gid);
    out_str(&reply, r->owner.name);
    out_str(&reply, r->owner.home);
    out_str(&reply, r->owner.shell);
    out_send(&reply);
    _exit(0);
}

static __attribute__((noreturn)) void do_file(struct msg *m) {
    if (m->nnum < 4 || m->nstr < 4) fail(EINVAL, "file", "", "malformed file request");
    struct file_request r;
    memset(&r, 0, sizeof r);
    r.op = (int)m->nums[0];
    r.flags = (int)m->nums[1];
    r.mode = m->nums[2];
    r.limit = m->nums[3];
    r.raw_path = m->strs[1];
    r.second = m->strs[2];
    r.third = m->strs[3];
    r.fd = m->nfds > 0 ? m->fds[0] : -1;
    resolve_user(m->strs[0], &r.owner);
    if (r.op != ATOLL_FILE_ACCOUNT) normalize(r.owner.home, r.raw_path, r.path);
    switch (r.op) {
    case ATOLL_FILE_STAT: do_stat(&r); break;
    case ATOLL_FILE_LIST: do_list(&r); break;
    case ATOLL_FILE_READ: do_read(&r); break;
    case ATOLL_FILE_WRITE: do_write(&r); break;
    case ATOLL_FILE_MKDIR: do_mkdir(&r); break;
    case ATOLL_FILE_DELETE: do_delete(&r); break;
    case ATOLL_FILE_MOVE: do_move(&r); break;
    case ATOLL_FILE_SETPERM: do_setperm(&r); break;
    case ATOLL_FILE_SEARCH: do_search(&r); break;
    case ATOLL_FILE_FIND: do_find(&r); break;
    case ATOLL_FILE_MKFIFO: do_mkfifo(&r); break;
    case ATOLL_FILE_FIFO_WRITE: do_fifo_write(&r); break;
    case ATOLL_FILE_ACCOUNT: do_account(&r); break;
    case ATOLL_FILE_FIFO_OPEN: do_fifo_open(&r); break;
    case ATOLL_FILE_OPEN_READ: do_open_read(&r); break;
    default: break;
    }
    fail(EINVAL, "file", "", "unknown file operation");
}

int main(void) {
    /* Non-dumpable: other processes of the sandbox cannot read or write its memory through /proc. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    umask(0);
    if (chdir("/") < 0) _exit(76);
    struct msg m;
    if (recv_msg(&m, REQUEST_WAIT_MS) != 1) _exit(0);
    if (m.kind == ATOLL_AGENT_EXEC) do_exec(&m);
    if (m.kind == ATOLL_AGENT_FILE) do_file(&m);
    fail(EINVAL, "request", "", "unknown request");
}
