/*
 * Sandbox spawn and exec: the only code that runs between clone and execve.
 *
 * Both entry points follow the same discipline (see shim_internal.h): the parent has prepared
 * every string, array and BPF program; the child issues raw system calls only, and reports the
 * first failure as an atoll_error through a CLOEXEC pipe before exiting with status 127.
 */
#define _GNU_SOURCE
#include "shim_internal.h"
#include "../include/atoll_agent.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT           47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

struct atoll_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct atoll_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#define ATOLL_RESOLVE_NO_MAGICLINKS 0x02
#define ATOLL_RESOLVE_NO_SYMLINKS   0x04
#define ATOLL_RESOLVE_BENEATH       0x08

long atoll_clone3(struct atoll_clone_args *args) {
    return syscall(SYS_clone3, args, sizeof *args);
}

/* -------------------------------------------------------------------------------------------
 * Messages from children to the parent. A pipe write of this size is atomic (< PIPE_BUF).
 * ----------------------------------------------------------------------------------------- */
enum { MSG_ERROR = 1 };

struct child_msg {
    int32_t type;
    atoll_error error;
};

static void send_msg(int fd, const struct child_msg *m) {
    ssize_t r;
    do {
        r = write(fd, m, sizeof *m);
    } while (r < 0 && errno == EINTR);
}

/// Reports the error recorded in `m->error` and exits the child.
static __attribute__((noreturn)) void child_die(int fd, struct child_msg *m) {
    m->type = MSG_ERROR;
    send_msg(fd, m);
    _exit(127);
}

/* -------------------------------------------------------------------------------------------
 * Root filesystem plan (runs in the sandbox's first process, still privileged on the host).
 * ----------------------------------------------------------------------------------------- */

/*
 * A relative target lives in the sandbox's own filesystem, which the sandbox could have filled
 * with symlinks during an earlier run. Refuse any target (or, for one that does not exist yet,
 * its parent) that leaves the new root or passes through a symlink; mount(2) would follow it.
 * Nothing of the sandbox runs during start, so the check cannot race with a change.
 */
static int check_beneath(const char *target, atoll_error *e) {
    if (target[0] == '/') return 0;
    struct atoll_open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .resolve = ATOLL_RESOLVE_BENEATH | ATOLL_RESOLVE_NO_SYMLINKS | ATOLL_RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, AT_FDCWD, target, &how, sizeof how);
    if (fd >= 0) {
        struct stat st;
        int r = fstat((int)fd, &st);
        close((int)fd);
        if (r == 0 && S_ISLNK(st.st_mode)) return atoll_fail(e, ELOOP, "openat2(beneath, no symlinks)", target);
        return 0;
    }
    if (errno != ENOENT) return atoll_fail(e, errno, "openat2(beneath, no symlinks)", target);
    /* The target does not exist: its parent must be a real directory beneath the root. */
    char parent[512];
    size_t n = atoll_strlen(target);
    if (n >= sizeof parent) return atoll_fail(e, ENAMETOOLONG, "openat2(beneath, no symlinks)", target);
    atoll_strlcpy(parent, target, sizeof parent);
    while (n > 0 && parent[n - 1] != '/') n--;
    if (n == 0) return 1; /* the parent is the new root itself */
    parent[n - 1] = 0;
    fd = syscall(SYS_openat2, AT_FDCWD, parent, &how, sizeof how);
    if (fd < 0) return atoll_fail(e, errno, "openat2(beneath, no symlinks)", parent);
    close((int)fd);
    return 1;
}

static int op_mount(const atoll_op *op, atoll_error *e) {
    if (mount(op->source, op->target, op->fstype, op->flags, op->data) < 0) return atoll_fail(e, errno, "mount", op->target);
    return 0;
}

static int op_bind(const atoll_op *op, atoll_error *e) {
    if (mount(op->source, op->target, NULL, MS_BIND | MS_REC, NULL) < 0) return atoll_fail(e, errno, "mount(bind)", op->target);
    if (op->flags && mount(NULL, op->target, NULL, MS_BIND | MS_REMOUNT | op->flags, NULL) < 0)
        return atoll_fail(e, errno, "mount(remount)", op->target);
    return 0;
}

static int op_readonly(const atoll_op *op, atoll_error *e) {
    if (mount(op->target, op->target, NULL, MS_BIND | MS_REC, NULL) < 0) return atoll_fail(e, errno, "mount(bind)", op->target);
    if (mount(NULL, op->target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | op->flags, NULL) < 0)
        return atoll_fail(e, errno, "mount(remount,ro)", op->target);
    return 0;
}

/* Matches runc: a masked directory gets an empty read-only tmpfs, a masked file /dev/null. */
static int op_mask(const atoll_op *op, atoll_error *e) {
    struct stat st;
    if (lstat(op->target, &st) < 0) return atoll_fail(e, errno, "lstat", op->target);
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", op->target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            return atoll_fail(e, errno, "mount(tmpfs,mask)", op->target);
    } else if (mount("/dev/null", op->target, NULL, MS_BIND, NULL) < 0) {
        return atoll_fail(e, errno, "mount(bind /dev/null,mask)", op->target);
    }
    return 0;
}

static int op_touch(const atoll_op *op, atoll_error *e) {
    int fd = open(op->target, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, op->mode);
    if (fd < 0) return atoll_fail(e, errno, "open(create)", op->target);
    close(fd);
    return 0;
}

static int op_write(const atoll_op *op, atoll_error *e) {
    int fd = open(op->target, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return atoll_fail(e, errno, "open(write)", op->target);
    size_t len = atoll_strlen(op->data);
    ssize_t w = write(fd, op->data, len);
    int err = errno;
    close(fd);
    if (w != (ssize_t)len) return atoll_fail(e, w < 0 ? err : EIO, "write", op->target);
    return 0;
}

/* A detached copy of `source`, idmapped through the plan's user namespace, attached over target. */
static int op_idmap_bind(const atoll_op *op, int userns_fd, atoll_error *e) {
    long tree = syscall(SYS_open_tree, AT_FDCWD, op->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) return atoll_fail(e, errno, "open_tree", op->source);
    struct atoll_mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | op->flags,
        .userns_fd = (uint64_t)userns_fd,
    };
    if (syscall(SYS_mount_setattr, (int)tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
        int err = errno;
        close((int)tree);
        return atoll_fail(e, err, "mount_setattr(idmap)", op->source);
    }
    if (syscall(SYS_move_mount, (int)tree, "", AT_FDCWD, op->target, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        int err = errno;
        close((int)tree);
        return atoll_fail(e, err, "move_mount", op->target);
    }
    close((int)tree);
    return 0;
}

/* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." removes it. */
static int op_pivot(atoll_error *e) {
    if (syscall(SYS_pivot_root, ".", ".") < 0) return atoll_fail(e, errno, "pivot_root", ".");
    if (umount2(".", MNT_DETACH) < 0) return atoll_fail(e, errno, "umount2(old root)", ".");
    if (chdir("/") < 0) return atoll_fail(e, errno, "chdir", "/");
    return 0;
}

static int run_plan(const atoll_op *ops, uint32_t nops, int userns_fd, atoll_error *e) {
    for (uint32_t i = 0; i < nops; i++) {
        const atoll_op *op = &ops[i];
        int r = 0;
        if (op->target && op->kind != ATOLL_OP_CHDIR && op->kind != ATOLL_OP_PIVOT) {
            r = check_beneath(op->target, e);
            if (r < 0) {
                if (op->optional && e->err == ENOENT) continue;
                return r;
            }
            int creates = op->kind == ATOLL_OP_MKDIR || op->kind == ATOLL_OP_TOUCH || op->kind == ATOLL_OP_SYMLINK;
            if (r == 1 && op->optional && !creates) continue;
        }
        switch (op->kind) {
        case ATOLL_OP_MOUNT: r = op_mount(op, e); break;
        case ATOLL_OP_BIND: r = op_bind(op, e); break;
        case ATOLL_OP_READONLY: r = op_readonly(op, e); break;
        case ATOLL_OP_MASK: r = op_mask(op, e); break;
        case ATOLL_OP_MKDIR:
            r = (mkdir(op->target, op->mode) < 0 && errno != EEXIST) ? atoll_fail(e, errno, "mkdir", op->target) : 0;
            break;
        case ATOLL_OP_TOUCH: r = op_touch(op, e); break;
        case ATOLL_OP_SYMLINK:
            r = (symlink(op->source, op->target) < 0 && errno != EEXIST) ? atoll_fail(e, errno, "symlink", op->target) : 0;
            break;
        case ATOLL_OP_WRITE: r = op_write(op, e); break;
        case ATOLL_OP_IDMAP_BIND: r = op_idmap_bind(op, userns_fd, e); break;
        case ATOLL_OP_CHDIR: r = chdir(op->target) < 0 ? atoll_fail(e, errno, "chdir", op->target) : 0; break;
        case ATOLL_OP_PIVOT: r = op_pivot(e); break;
        default: r = atoll_fail(e, EINVAL, "plan(unknown step)", op->target); break;
        }
        if (r < 0) {
            if (op->optional && e->err == ENOENT) continue;
            return r;
        }
    }
    return 0;
}

/* A new network namespace starts with "lo" down; programs expect 127.0.0.1 to work. */
static int loopback_up(atoll_error *e) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return atoll_fail(e, errno, "socket(AF_INET)", "lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    atoll_strlcpy(ifr.ifr_name, "lo", sizeof ifr.ifr_name);
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        rc = atoll_fail(e, errno, "ioctl(SIOCGIFFLAGS)", "lo");
    } else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = atoll_fail(e, errno, "ioctl(SIOCSIFFLAGS)", "lo");
    }
    close(s);
    return rc;
}

/* -------------------------------------------------------------------------------------------
 * Shared tail of spawn and exec: join the user namespace, drop privileges, exec.
 * ----------------------------------------------------------------------------------------- */

static int join_cgroup_v1(const atoll_cgroup_target *cg, atoll_error *e) {
    for (uint32_t i = 0; i < cg->nprocs_fds; i++) {
        ssize_t w = write(cg->procs_fds[i], "0", 1);
        if (w != 1) return atoll_fail(e, errno, "write(cgroup.procs)", "0");
    }
    return 0;
}

/*
 * Order matters: the bounding set needs CAP_SETPCAP, set*id needs CAP_SETUID/SETGID, so both run
 * while the fresh user namespace still grants every capability; then capset lowers the sets to
 * the profile (nothing at all for a non-root user), and chdir runs with exactly those rights.
 */
static int apply_identity(const atoll_identity *id, const char *cwd, atoll_error *e) {
    /* Ids must be ones the sandbox's user namespace maps: set*id(-1) would change nothing. */
    if (id->uid >= ATOLL_SANDBOX_ID_COUNT || id->gid >= ATOLL_SANDBOX_ID_COUNT)
        return atoll_fail(e, EINVAL, "identity(outside the sandbox's ids)", "");
    if (setns(id->userns_fd, CLONE_NEWUSER) < 0) return atoll_fail(e, errno, "setns(user)", "");
    for (uint32_t cap = 0; cap <= id->last_cap && cap < 64; cap++) {
        if (id->bounding & (1ULL << cap)) continue;
        if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return atoll_fail(e, errno, "prctl(PR_CAPBSET_DROP)", "");
    }
    if (syscall(SYS_setgroups, (size_t)id->ngroups, id->groups) < 0) return atoll_fail(e, errno, "setgroups", "");
    if (syscall(SYS_setresgid, id->gid, id->gid, id->gid) < 0) return atoll_fail(e, errno, "setresgid", "");
    if (syscall(SYS_setresuid, id->uid, id->uid, id->uid) < 0) return atoll_fail(e, errno, "setresuid", "");
    uid_t ru = 1, eu = 1, su = 1;
    gid_t rg = 1, eg = 1, sg = 1;
    if (syscall(SYS_getresuid, &ru, &eu, &su) < 0 || ru != id->uid || eu != id->uid || su != id->uid)
        return atoll_fail(e, EPERM, "setresuid(check)", "");
    if (syscall(SYS_getresgid, &rg, &eg, &sg) < 0 || rg != id->gid || eg != id->gid || sg != id->gid)
        return atoll_fail(e, EPERM, "setresgid(check)", "");
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        uint32_t word = (uint32_t)(id->capabilities >> (32 * i));
        data[i].effective = data[i].permitted = data[i].inheritable = word;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) return atoll_fail(e, errno, "capset", "");
    if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return atoll_fail(e, errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", "");
    if (cwd && cwd[0] && chdir(cwd) < 0) return atoll_fail(e, errno, "chdir", cwd);
    /* Whatever the daemon's umask is, sandbox processes start with the usual one. */
    umask(022);
    struct rlimit core = {.rlim_cur = id->rlimit_core, .rlim_max = id->rlimit_core};
    if (syscall(SYS_setrlimit, RLIMIT_CORE, &core) < 0) return atoll_fail(e, errno, "setrlimit(RLIMIT_CORE)", "");
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return atoll_fail(e, errno, "prctl(PR_SET_NO_NEW_PRIVS)", "");
    if (id->seccomp_len > 0) {
        struct sock_fprog prog = {.len = (unsigned short)id->seccomp_len, .filter = (struct sock_filter *)id->seccomp};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) return atoll_fail(e, errno, "seccomp(SET_MODE_FILTER)", "");
    }
    return 0;
}

/* The daemon may ignore SIGPIPE or block signals; a sandbox process starts with the defaults. */
static void reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
    }
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);
}

static int setup_stdio(int in, int out, int errfd, atoll_error *e) {
    int fds[3] = {in, out, errfd};
    int devnull = -1;
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0) {
            if (devnull < 0) {
                devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull < 0) return atoll_fail(e, errno, "open", "/dev/null");
            }
            fds[i] = devnull;
        }
    }
    for (int i = 0; i < 3; i++) {
        /* dup2 onto itself keeps CLOEXEC; dup3 semantics would refuse. Clear it by hand then. */
        if (fds[i] == i) {
            int flags = fcntl(i, F_GETFD);
            if (flags >= 0) fcntl(i, F_SETFD, flags & ~FD_CLOEXEC);
        } else if (dup2(fds[i], i) < 0) {
            return atoll_fail(e, errno, "dup2", "");
        }
    }
    return 0;
}

/* Blocks every signal in the calling thread for the clone window, so no handler of the daemon
 * ever runs in a child; the child resets handlers before unblocking. */
static void block_all(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

/* Reads child messages until EOF. Returns whether an error message arrived (then in *err). */
static int read_msgs(int fd, atoll_error *err) {
    struct child_msg m;
    int failed = 0;
    while (1) {
        ssize_t r = read(fd, &m, sizeof m);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (r != (ssize_t)sizeof m) {
            atoll_fail(err, EIO, "read(child status pipe)", "");
            failed = 1;
            break;
        }
        if (m.type == MSG_ERROR) {
            if (err) *err = m.error;
            failed = 1;
        }
    }
    return failed;
}

/// The body of a child: never returns; reports failures on `msgfd`.
typedef void (*child_body)(const void *cfg, int msgfd);

/*
 * clone3 with `flags` (plus CLONE_INTO_CGROUP when `cgroup` has a directory), every signal
 * blocked in the calling thread for the window, and a CLOEXEC message pipe. The child closes the
 * read end and runs `body`; the parent gets the pid and the read end in `*msg_read`.
 */
static long clone_child(uint64_t flags, const atoll_cgroup_target *cgroup, int *pidfd, child_body body, const void *cfg, int *msg_read,
                        const char *what, atoll_error *err) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return atoll_fail(err, errno, "pipe2", "");
    struct atoll_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (pidfd) args.pidfd = (uint64_t)(uintptr_t)pidfd;
    if (cgroup->dir_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup->dir_fd;
    }
    sigset_t old;
    block_all(&old);
    long pid = atoll_clone3(&args);
    if (pid == 0) {
        close(pipefd[0]);
        body(cfg, pipefd[1]);
        _exit(127);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return atoll_fail(err, clone_errno, what, "");
    }
    *msg_read = pipefd[0];
    return pid;
}

/* -------------------------------------------------------------------------------------------
 * Spawn: the sandbox's PID 1.
 * ----------------------------------------------------------------------------------------- */

static __attribute__((noreturn)) void spawn_child(const void *config, int msgfd) {
    const atoll_spawn_config *cfg = config;
    struct child_msg m;
    memset(&m, 0, sizeof m);
    atoll_error *e = &m.error;

    /* A prepared namespace (address, routes, link to the bridge) is joined first, so the plan's
     * /proc/sys/net writes land in it. */
    if (cfg->netns_fd >= 0 && setns(cfg->netns_fd, CLONE_NEWNET) < 0) {
        atoll_fail(e, errno, "setns(net)", "sandbox network namespace");
        child_die(msgfd, &m);
    }
    if (join_cgroup_v1(&cfg->cgroup, e) < 0) child_die(msgfd, &m);
    /* The cgroup namespace is rooted where the process stands now, so it is created after the join. */
    if (unshare(CLONE_NEWCGROUP) < 0) {
        atoll_fail(e, errno, "unshare(CLONE_NEWCGROUP)", "");
        child_die(msgfd, &m);
    }
    /* Nothing mounted from here on may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        atoll_fail(e, errno, "mount(rprivate)", "/");
        child_die(msgfd, &m);
    }
    if (run_plan(cfg->ops, cfg->nops, cfg->idmap_userns_fd, e) < 0) child_die(msgfd, &m);
    if (cfg->hostname && sethostname(cfg->hostname, atoll_strlen(cfg->hostname)) < 0) {
        atoll_fail(e, errno, "sethostname", cfg->hostname);
        child_die(msgfd, &m);
    }
    if (cfg->loopback_up && loopback_up(e) < 0) child_die(msgfd, &m);
    if (setup_stdio(-1, -1, -1, e) < 0) child_die(msgfd, &m);
    if (apply_identity(&cfg->identity, "/", e) < 0) child_die(msgfd, &m);
    /* PID 1 finds the agent's listener at fd 3 and its memfd at fd 4; nothing else survives the
     * exec. Everything is first moved above them, so one placement cannot clobber another. */
    int exec_fd = fcntl(cfg->exec_fd, F_DUPFD_CLOEXEC, 10);
    int listener = cfg->agent_listener_fd >= 0 ? fcntl(cfg->agent_listener_fd, F_DUPFD_CLOEXEC, 10) : -1;
    int agent = cfg->agent_exec_fd >= 0 ? fcntl(cfg->agent_exec_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (exec_fd < 0 || (cfg->agent_listener_fd >= 0 && listener < 0) || (cfg->agent_exec_fd >= 0 && agent < 0)) {
        atoll_fail(e, errno, "fcntl(F_DUPFD_CLOEXEC)", "init descriptors");
        child_die(msgfd, &m);
    }
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    /* dup2's copies are not close-on-exec. */
    if ((listener >= 0 && dup2(listener, 3) < 0) || (agent >= 0 && dup2(agent, 4) < 0)) {
        atoll_fail(e, errno, "dup2", "init descriptors");
        child_die(msgfd, &m);
    }
    reset_signals();
    syscall(SYS_execveat, exec_fd, "", cfg->argv, cfg->envp, AT_EMPTY_PATH);
    atoll_fail(e, errno, "execveat(init)", "");
    child_die(msgfd, &m);
}

int atoll_spawn_sandbox(const atoll_spawn_config *cfg, pid_t *pid_out, int *pidfd_out, atoll_error *err) {
    int pidfd = -1, msgs = -1;
    uint64_t net = cfg->netns_fd >= 0 ? 0 : CLONE_NEWNET;
    long pid = clone_child(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | net | CLONE_PIDFD, &cfg->cgroup, &pidfd, spawn_child,
                           cfg, &msgs, "clone3(sandbox namespaces)", err);
    if (pid < 0) return (int)pid;
    int failed = read_msgs(msgs, err);
    close(msgs);
    if (failed) {
        siginfo_t info;
        waitid(P_PID, (id_t)pid, &info, WEXITED);
        close(pidfd);
        return -err->err;
    }
    *pid_out = (pid_t)pid;
    *pidfd_out = pidfd;
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * A host program placed into a cgroup from its first instruction (helpers, conformance tests).
 * ----------------------------------------------------------------------------------------- */

static __attribute__((noreturn)) void placed_child(const void *config, int msgfd) {
    const atoll_placed_config *cfg = config;
    struct child_msg m;
    memset(&m, 0, sizeof m);
    atoll_error *e = &m.error;
    if (join_cgroup_v1(&cfg->cgroup, e) < 0) child_die(msgfd, &m);
    if (setup_stdio(cfg->stdin_fd, cfg->stdout_fd, cfg->stderr_fd, e) < 0) child_die(msgfd, &m);
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    reset_signals();
    execve(cfg->path, cfg->argv, cfg->envp);
    atoll_fail(e, errno, "execve", cfg->path);
    child_die(msgfd, &m);
}

int atoll_spawn_placed(const atoll_placed_config *cfg, pid_t *pid_out, int *pidfd_out, atoll_error *err) {
    int pidfd = -1, msgs = -1;
    long pid = clone_child(CLONE_PIDFD, &cfg->cgroup, &pidfd, placed_child, cfg, &msgs, "clone3(into cgroup)", err);
    if (pid < 0) return (int)pid;
    int failed = read_msgs(msgs, err);
    close(msgs);
    if (failed) {
        siginfo_t info;
        while (waitid(P_PID, (id_t)pid, &info, WEXITED) < 0 && errno == EINTR) {}
        close(pidfd);
        return -err->err;
    }
    *pid_out = (pid_t)pid;
    *pidfd_out = pidfd;
    return 0;
}
