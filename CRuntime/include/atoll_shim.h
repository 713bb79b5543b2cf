/*
 * atoll_shim.h — the C boundary of Atoll's kernel layer.
 *
 * Everything that runs between clone and execve lives behind this header: the caller (Swift)
 * builds every string, array and BPF program first, hands over plain structs, and the forked
 * child only issues raw system calls (no allocation, no locks, no Swift). A failure in the child
 * travels back through a CLOEXEC pipe as an `atoll_error` naming the call, the path and errno.
 *
 * Policy (which mounts, which capabilities, which syscalls are denied) is decided in Swift;
 * this layer only carries it out.
 */
#ifndef ATOLL_SHIM_H
#define ATOLL_SHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A failed system call: which call, on which path or object, and the errno it returned.
typedef struct atoll_error {
    int32_t err;    /* errno value (positive) */
    char call[48];  /* e.g. "mount", "pivot_root", "setns(user)" */
    char path[464]; /* path or object the call acted on, "" when none */
} atoll_error;

/* ---------------------------------------------------------------------------------------------
 * Root filesystem plan: executed in order by the sandbox's first process, inside its new mount
 * namespace, before it gives up host privileges. Targets are resolved against the current working
 * directory, so a plan mounts the disk and the overlay by absolute path, then `ATOLL_OP_CHDIR`s
 * into the new root and continues with relative targets ("proc", "dev/null", ...).
 * ------------------------------------------------------------------------------------------- */
enum atoll_op_kind {
    ATOLL_OP_MOUNT = 1,      /* mount(source, target, fstype, flags, data) */
    ATOLL_OP_BIND = 2,       /* bind source onto target; flags (MS_RDONLY, MS_NOSUID, ...) applied by a remount */
    ATOLL_OP_READONLY = 3,   /* bind target onto itself and remount read-only (runc "readonlyPaths") */
    ATOLL_OP_MASK = 4,       /* /dev/null over a file, empty read-only tmpfs over a directory (runc "maskedPaths") */
    ATOLL_OP_MKDIR = 5,      /* mkdir target with mode (existing directory is fine) */
    ATOLL_OP_TOUCH = 6,      /* create an empty regular file target with mode (bind-mount target) */
    ATOLL_OP_SYMLINK = 7,    /* symlink: target -> source */
    ATOLL_OP_WRITE = 8,      /* write data to the existing file target (e.g. a /proc/sys entry) */
    ATOLL_OP_IDMAP_BIND = 9, /* detached bind of source, idmapped to the plan's user namespace, attached over target */
    ATOLL_OP_CHDIR = 10,     /* chdir(target) */
    ATOLL_OP_PIVOT = 11,     /* pivot_root into the current directory and detach the old root */
};

/// One step of a root filesystem plan.
typedef struct atoll_op {
    int32_t kind;      /* enum atoll_op_kind */
    uint32_t optional; /* non-zero: a missing source or target (ENOENT) skips the step */
    const char *source;
    const char *target;
    const char *fstype;
    const char *data;
    unsigned long flags; /* MS_* flags */
    uint32_t mode;
} atoll_op;

/// The credentials a sandbox process ends up with, applied last before execve.
typedef struct atoll_identity {
    int userns_fd; /* user namespace to join */
    uint32_t uid;  /* ids inside the user namespace */
    uint32_t gid;
    const uint32_t *groups; /* supplementary groups inside the user namespace */
    uint32_t ngroups;
    uint64_t bounding;     /* capability bounding set (bit n = capability n) */
    uint64_t capabilities; /* permitted = effective = inheritable; 0 for non-root users */
    uint32_t last_cap;     /* /proc/sys/kernel/cap_last_cap of the host */
    const void *seccomp;   /* struct sock_filter[] built by atoll_seccomp_build */
    uint32_t seccomp_len;  /* number of BPF instructions */
    uint64_t rlimit_core;  /* RLIMIT_CORE soft and hard value */
} atoll_identity;

/// Where a new process is placed in the cgroup tree before it runs anything.
typedef struct atoll_cgroup_target {
    int dir_fd;           /* cgroup v2: directory fd for CLONE_INTO_CGROUP, or -1 */
    const int *procs_fds; /* cgroup v1: open cgroup.procs files, "0" is written to each */
    uint32_t nprocs_fds;
} atoll_cgroup_target;

/// Everything needed to start a sandbox's PID 1.
typedef struct atoll_spawn_config {
    const atoll_op *ops; /* root filesystem plan, ends with ATOLL_OP_PIVOT */
    uint32_t nops;
    int idmap_userns_fd; /* user namespace for ATOLL_OP_IDMAP_BIND steps */
    const char *hostname;
    int loopback_up; /* non-zero: bring "lo" up in the sandbox's network namespace */
    int netns_fd;    /* network namespace to join (made by atoll_net_sandbox_create), or -1 for a new empty one */
    atoll_cgroup_target cgroup;
    int exec_fd;           /* executable to run as PID 1 (a sealed memfd holding atoll-init) */
    int agent_listener_fd; /* becomes PID 1's fd 3 (ATOLL_INIT_LISTENER_FD): the agent's listening socket, or -1 */
    int agent_exec_fd;     /* becomes PID 1's fd 4 (ATOLL_INIT_AGENT_FD): the agent's sealed memfd, or -1 */
    char *const *argv;
    char *const *envp;
    atoll_identity identity;
} atoll_spawn_config;

/*
 * Starts a sandbox: clone3 into new mount, pid, uts, ipc, net (or join `netns_fd`) and cgroup namespaces, join the
 * cgroup, run the root filesystem plan, set the hostname, join the user namespace, drop
 * privileges, load seccomp and execveat the init with the agent's listener and memfd as its fds 3
 * and 4. Returns 0 and the host pid and a pidfd of the sandbox's PID 1, or -errno with `err`
 * filled in (the child has been reaped then).
 */
int atoll_spawn_sandbox(const atoll_spawn_config *cfg, pid_t *pid_out, int *pidfd_out, atoll_error *err);

/// A host program to start directly inside a cgroup.
typedef struct atoll_placed_config {
    const char *path; /* absolute path of the program */
    char *const *argv;
    char *const *envp;
    atoll_cgroup_target cgroup;
    int stdin_fd, stdout_fd, stderr_fd; /* become 0, 1, 2; -1: /dev/null */
} atoll_placed_config;

/*
 * Starts a host program (no new namespaces, same credentials) that is in the cgroup before it
 * runs anything: CLONE_INTO_CGROUP on v2, cgroup.procs writes on v1. Returns 0 with its pid and a
 * pidfd (the caller reaps it), or -errno with `err` filled in.
 */
int atoll_spawn_placed(const atoll_placed_config *cfg, pid_t *pid_out, int *pidfd_out, atoll_error *err);

/*
 * Creates a user namespace mapping ids [0, count) to [uid_base, uid_base+count) and
 * [gid_base, gid_base+count), held by a short-lived child, and returns an O_CLOEXEC fd to it.
 */
int atoll_userns_create(uint32_t uid_base, uint32_t gid_base, uint32_t count, int *fd_out, atoll_error *err);

/*
 * Attaches `image` to a free loop device with LOOP_CONFIGURE (direct I/O off, autoclear on):
 * the device detaches by itself once the last mount and the returned fd are gone.
 */
int atoll_loop_attach(const char *image, int *index_out, int *fd_out, atoll_error *err);

/// A seccomp rule: `action` for syscall `name`, optionally only when `(arg[arg_index] & mask) == value`.
typedef struct atoll_seccomp_rule {
    const char *name;
    int32_t errno_value; /* >0: fail with this errno; 0: kill the process */
    int32_t arg_index;   /* -1: unconditional */
    uint64_t mask;
    uint64_t value;
} atoll_seccomp_rule;

/*
 * Compiles a deny-list filter with libseccomp: default allow, the given rules, and every syscall
 * of a foreign ABI (i386, x32 on x86_64) killing the process. On success `*prog_out` points to a
 * malloc'ed struct sock_filter array of `*len_out` instructions (free with free()).
 */
int atoll_seccomp_build(const atoll_seccomp_rule *rules, uint32_t nrules, void **prog_out, uint32_t *len_out, atoll_error *err);

/// The capability number for a name such as "CAP_CHOWN" or "chown" (libcap), or -1.
int atoll_cap_from_name(const char *name);

/// Creates a sealed, executable, close-on-exec memfd holding `size` bytes of `data`.
int atoll_sealed_memfd(const char *name, const void *data, size_t size, int *fd_out, atoll_error *err);

/// pidfd_open(pid, 0) with an error naming the pid.
int atoll_pidfd_open(pid_t pid, atoll_error *err);

/// pidfd_send_signal(pidfd, sig, NULL, 0).
int atoll_pidfd_signal(int pidfd, int sig, atoll_error *err);

/// Result of waiting for a child.
typedef struct atoll_exit {
    int32_t exited; /* 1 = exited normally, 0 = killed by a signal */
    int32_t status; /* exit code or signal number */
} atoll_exit;

/*
 * waitid(P_PIDFD, pidfd, WEXITED | (block ? 0 : WNOHANG)). Returns 1 when the child was reaped
 * (`out` filled), 0 when it is still running (non-blocking), or -errno.
 */
int atoll_pidfd_wait(int pidfd, int block, atoll_exit *out, atoll_error *err);

/*
 * Routes `signals` to a pipe: an async-signal-safe handler writes each signal's number as one
 * byte, so a normal thread can react to it. A signal that was ignored when the process started
 * (SIGINT/SIGHUP of a background job, nohup) stays ignored. Returns the read end or -errno.
 */
int atoll_signal_pipe(const int *signals, int count, atoll_error *err);

/* ---------------------------------------------------------------------------------------------
 * Networking (shim_net.c). `host_ns_fd` is the network namespace that plays the host (-1: the
 * caller's own); work in another one runs on a short-lived thread of its own. Addresses are
 * IPv4 in host byte order.
 * ------------------------------------------------------------------------------------------- */

/*
 * Makes sure the bridge `bridge` exists (created with a fixed random MAC), holds
 * `gateway`/`prefix` and is up. A link of that name that is not a bridge is an error.
 */
int atoll_net_bridge_ensure(int host_ns_fd, const char *bridge, uint32_t gateway, uint8_t prefix, atoll_error *err);

/// A sandbox's link to the bridge.
typedef struct atoll_sandbox_link {
    const char *bridge;    /* bridge the host end joins (as an isolated port) */
    const char *host_name; /* host end of the veth pair; an existing link of that name is replaced */
    const char *peer_name; /* sandbox end, e.g. "eth0" */
    uint32_t address;      /* the sandbox's address (a /32 inside) */
    uint32_t gateway;      /* the bridge's address: on-link route and default gateway */
} atoll_sandbox_link;

/*
 * Creates a network namespace for a sandbox (IPv6 disabled, loopback up) linked to the bridge by
 * a veth pair, with its address and routes, and returns an O_CLOEXEC fd to it. On failure
 * nothing is left behind.
 */
int atoll_net_sandbox_create(int host_ns_fd, const atoll_sandbox_link *link, int *netns_fd_out, atoll_error *err);

/// Deletes a link (a veth's host end takes its peer with it). Returns 0, 1 when there was none, or -errno.
int atoll_net_link_delete(int host_ns_fd, const char *name, atoll_error *err);

/*
 * Lists the ports of `bridge` into `names` (each followed by a newline, NUL-terminated; names
 * that do not fit are left out). Returns how many were listed (0 without a bridge), or -errno.
 */
int atoll_net_bridge_ports(int host_ns_fd, const char *bridge, char *names, size_t cap, atoll_error *err);

/*
 * Reads the sysctl file `path` (e.g. /proc/sys/net/ipv4/ip_forward) of the namespace into `old`
 * (trailing newline removed) and, if `value` is not NULL and differs, writes `value`.
 */
int atoll_net_sysctl(int host_ns_fd, const char *path, const char *value, char *old, size_t oldcap, atoll_error *err);

/*
 * Runs nftables commands (one atomic transaction) with libnftables. `*output` and `*errors` get
 * malloc'ed copies of what nft printed (or NULL); free them with free(). Returns 0 or -errno.
 */
int atoll_nft_run(int host_ns_fd, const char *commands, char **output, char **errors, atoll_error *err);

/// Creates a new network namespace with loopback up and returns an O_CLOEXEC fd to it (it lives as long as that fd).
int atoll_net_namespace_create(int *fd_out, atoll_error *err);

/// socket(domain, type | SOCK_CLOEXEC, protocol) made inside the network namespace `ns_fd` (it stays bound to it). Returns the fd or
/// -errno.
int atoll_net_socket(int ns_fd, int domain, int type, int protocol, atoll_error *err);

/* ---------------------------------------------------------------------------------------------
 * The sandbox agent's socket (shim_agent.c, protocol in atoll_agent.h). Paths are reached through
 * /proc/self/fd/<dir_fd>/<name>, so a long data directory never overflows sun_path.
 * ------------------------------------------------------------------------------------------- */

/// Binds a listening SOCK_SEQPACKET socket at `name` in the directory `dir_fd` (a stale socket file is replaced).
int atoll_agent_listen(int dir_fd, const char *name, int *fd_out, atoll_error *err);

/// Connects to the agent socket `name` in the directory `dir_fd`. Returns 0 with a close-on-exec descriptor, or -errno.
int atoll_agent_connect(int dir_fd, const char *name, int *fd_out, atoll_error *err);

/// Sends one message with `nfds` descriptors (SCM_RIGHTS), never raising SIGPIPE. Returns 0 or -errno.
int atoll_agent_send(int fd, const void *data, size_t len, const int *fds, int nfds, atoll_error *err);

/*
 * Waits up to `timeout_ms` (-1: no limit) for the next message and returns its size without
 * consuming it: > 0, 0 at end of stream, -ETIMEDOUT, or -errno.
 */
long atoll_agent_peek(int fd, int timeout_ms, atoll_error *err);

/// Receives the next message into `buf`. Descriptors sent along go to `fds` (close-on-exec), at most
/// `*nfds` of them, and `*nfds` becomes how many did; the rest are closed (pass NULLs to close all).
/// Returns its size or -errno.
long atoll_agent_recv(int fd, void *buf, size_t cap, int *fds, int *nfds, atoll_error *err);

/// 0 when `fd` is a pseudo-terminal's master end (the device 5:2 answering TIOCGPTN), else -errno.
int atoll_pty_check_master(int fd);

/// Sets the terminal size of the master `fd` (the process on the other end gets SIGWINCH). 0 or -errno.
int atoll_pty_resize(int fd, unsigned short rows, unsigned short cols);

/// O_PATH, which Swift's Glibc module does not export (it needs _GNU_SOURCE).
#define ATOLL_O_PATH 010000000

/// openat2(dir_fd, name, flags | O_CLOEXEC, mode) resolved beneath `dir_fd` with no symlink, magic
/// link or mount crossing in any component (RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS | NO_XDEV):
/// how image layers are unpacked, whatever names their tars carry. Returns the fd or -errno.
int atoll_open_beneath(int dir_fd, const char *name, int flags, unsigned int mode);

/// AT_EMPTY_PATH, which Swift's Glibc module does not export (it needs _GNU_SOURCE).
#define ATOLL_AT_EMPTY_PATH 0x1000

/// fsetxattr(fd, name, value, size, 0) (sys/xattr.h does not reach Swift). Returns 0 or -errno.
int atoll_fsetxattr(int fd, const char *name, const void *value, size_t size);

/// lgetxattr(path, name, value, size): the value's length or -errno.
long atoll_lgetxattr(const char *path, const char *name, void *value, size_t size);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec. Returns 0 or -errno.
int atoll_pipe_cloexec(int fds[2]);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process (prctl is variadic, so Swift cannot call it).
/// Returns 0 or -errno.
int atoll_set_child_subreaper(void);

#ifdef __cplusplus
}
#endif
#endif
