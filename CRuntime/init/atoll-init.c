/*
 * atoll-init — PID 1 of every Atoll sandbox.
 *
 * It keeps the sandbox's namespaces alive while no user process runs, reaps every zombie
 * (orphans of the sandbox are re-parented to it), forwards a termination request to the rest of
 * the sandbox, and starts the sandbox's agent for each request of the runtime:
 *
 *   fd 3 (ATOLL_INIT_LISTENER_FD): a listening socket bound to a host path that nothing inside
 *        the sandbox can reach. For every connection PID 1 checks that the peer is outside its
 *        pid namespace, forks, and the child executes the agent (fd 4) with the connection as its
 *        fd 3. PID 1 never reads a request: parsing happens in the agent, so a hostile sandbox can
 *        at worst crash one agent, never its PID 1.
 *   fd 4 (ATOLL_INIT_AGENT_FD): the agent's sealed memfd.
 *
 * An agent serving an exec becomes the requested process itself (execve in place: no extra
 * process in the sandbox), so PID 1, its parent, reports how it ended: it keeps its own copy of
 * the connection and, when it reaps that child, sends an EXIT message. Once such an agent has
 * read its request it tells PID 1 so with a real-time signal (ATOLL_AGENT_READY_SIGNAL); from
 * then on PID 1 reads the connection too, for SIGNAL messages (a timeout: the whole process
 * group is killed) and for the runtime hanging up (the process group is killed: nobody reads its
 * output any more).
 *
 * Both are close-on-exec once PID 1 runs, so no sandbox process inherits them. Without fd 3
 * (a sandbox started with no agent) PID 1 only reaps.
 *
 * It is freestanding — no libc, raw system calls only — so it is static, a few kilobytes, and
 * runs in any root filesystem. The runtime embeds it and executes it from a sealed memfd: nothing
 * in the sandbox can see or replace the binary. Its signals are all blocked and read from a
 * signalfd, so there are no handlers and no races between reaping and waiting. Signals sent from
 * inside the sandbox cannot kill or stop it (the kernel drops SIGKILL and SIGSTOP for a pid
 * namespace's init when they come from inside it).
 */
#include <asm/unistd.h>

#include "atoll_agent.h"

#define SIGHUP          1
#define SIGINT          2
#define SIGQUIT         3
#define SIGTERM         15
#define SIGCHLD         17
#define WNOHANG         1
#define PR_SET_NAME     15
#define PR_SET_DUMPABLE 4
#define SIG_SETMASK     2
#define F_GETFD         1
#define F_SETFD         2
#define F_GETFL         3
#define F_SETFL         4
#define FD_CLOEXEC      1
#define O_NONBLOCK      04000
#define O_CLOEXEC       02000000
#define POLLIN          1
#define SOL_SOCKET      1
#define SO_PEERCRED     17
#define AT_EMPTY_PATH   0x1000
#define EINTR           4

#define LISTENER     ATOLL_INIT_LISTENER_FD
#define AGENT        ATOLL_INIT_AGENT_FD
#define SIGKILL      9
#define MSG_DONTWAIT 0x40
#define MSG_NOSIGNAL 0x4000
#define MAX_JOBS     1024

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n and $-16,%rsp\n call init_main\n hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x29, #0\n bl init_main\n");
#else
#error "atoll-init supports x86_64 and aarch64"
#endif

struct pollfd_k {
    int fd;
    short events;
    short revents;
};

struct ucred_k {
    int pid;
    unsigned uid;
    unsigned gid;
};

/* An agent PID 1 started, and PID 1's copy of its connection. `reading`: the agent has taken its
 * request (it said so with ATOLL_AGENT_READY_SIGNAL), so what arrives now is for PID 1. */
struct job {
    int pid;
    int conn;
    int reading;
};

static struct job jobs[MAX_JOBS];
static int njobs;

struct message {
    unsigned magic;
    unsigned short kind;
    unsigned short numbers;
    unsigned strings;
    unsigned length;
    long long value[2];
};

static struct job *find_job(int pid) {
    for (int i = 0; i < njobs; i++)
        if (jobs[i].pid == pid) return &jobs[i];
    return 0;
}

static void drop_job(struct job *j) {
    if (j->conn >= 0) sys6(__NR_close, j->conn, 0, 0, 0, 0, 0);
    *j = jobs[--njobs];
}

/* Tells the runtime how a job ended: exited (1) with a code, or killed (0) by a signal. */
static void report_exit(struct job *j, int status) {
    if (j->conn < 0) return;
    int signal = status & 0x7f;
    struct message m = {
        ATOLL_AGENT_MAGIC, ATOLL_AGENT_EXIT, 2, 0, sizeof m, {signal == 0 ? 1 : 0, signal == 0 ? (status >> 8) & 0xff : signal}};
    sys6(__NR_sendto, j->conn, (long)&m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
}

static void reap(void) {
    int status;
    long pid;
    while ((pid = sys6(__NR_wait4, -1, (long)&status, WNOHANG, 0, 0, 0)) > 0) {
        struct job *j = find_job((int)pid);
        if (!j) continue; /* an orphan of the sandbox */
        report_exit(j, status);
        drop_job(j);
    }
}

static void kill_group(int pid, int sig) {
    sys6(__NR_kill, -pid, sig, 0, 0, 0, 0);
    sys6(__NR_kill, pid, sig, 0, 0, 0, 0);
}

/* A message (or the end) on the connection of a job that took its request. */
static void read_job(struct job *j) {
    struct message m;
    long n = sys6(__NR_recvfrom, j->conn, (long)&m, sizeof m, MSG_DONTWAIT, 0, 0);
    if (n == -11 /* EAGAIN */ || n == -EINTR) return;
    if (n <= 0) {
        /* The runtime hung up: nobody reads the process's output any more. */
        kill_group(j->pid, SIGKILL);
        sys6(__NR_close, j->conn, 0, 0, 0, 0, 0);
        j->conn = -1;
        j->reading = 0;
        return;
    }
    if (n == 24 && m.magic == ATOLL_AGENT_MAGIC && m.kind == ATOLL_AGENT_SIGNAL && m.numbers == 1 && m.length == 24 && m.value[0] > 0 &&
        m.value[0] < 65)
        kill_group(j->pid, (int)m.value[0]);
}

/* Starts an agent for the accepted connection `conn`: the child gets it as fd 3 and executes the
 * agent's memfd. The child keeps PID 1's credentials (the sandbox's root, its capability set,
 * no_new_privs and seccomp filter), so the agent can never do more than the sandbox itself. */
static void start_agent(long conn) {
    /* Only the runtime, from outside the sandbox's pid namespace, may ask: a peer inside it shows
     * a pid of its own here, one outside shows 0. (The socket's path is unreachable from inside
     * anyway; this is the second wall.) */
    struct ucred_k peer = {1, 0, 0};
    unsigned len = sizeof peer;
    if (sys6(__NR_getsockopt, conn, SOL_SOCKET, SO_PEERCRED, (long)&peer, (long)&len, 0) < 0 || peer.pid != 0) {
        sys6(__NR_close, conn, 0, 0, 0, 0, 0);
        return;
    }
    if (njobs == MAX_JOBS) {
        sys6(__NR_close, conn, 0, 0, 0, 0, 0);
        return;
    }
    long pid = sys6(__NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid == 0) {
        static char name[] = "atoll-agent";
        static char *argv[] = {name, 0};
        static char *envp[] = {0};
        /* dup3 to fd 3 replaces the child's copy of the listener and is not close-on-exec. */
        if (sys6(__NR_dup3, conn, LISTENER, 0, 0, 0, 0) < 0) sys6(__NR_exit_group, 126, 0, 0, 0, 0, 0);
        sys6(__NR_close, conn, 0, 0, 0, 0, 0);
        sys6(__NR_execveat, AGENT, (long)"", (long)argv, (long)envp, AT_EMPTY_PATH, 0);
        sys6(__NR_exit_group, 127, 0, 0, 0, 0, 0);
    }
    if (pid < 0) {
        /* The runtime sees the connection close and reports that no agent could start (the
         * sandbox's task limit, most likely). */
        sys6(__NR_close, conn, 0, 0, 0, 0, 0);
        return;
    }
    jobs[njobs++] = (struct job){(int)pid, (int)conn, 0};
}

__attribute__((noreturn, used)) void init_main(void) {
    unsigned long all = ~0UL;
    unsigned char info[128];
    /* Non-dumpable: no process of the sandbox may ptrace or read the memory of PID 1. */
    sys6(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0);
    sys6(__NR_prctl, PR_SET_NAME, (long)"atoll-init", 0, 0, 0, 0);
    sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0, 0);
    long signals = sys6(__NR_signalfd4, -1, (long)&all, 8, O_CLOEXEC | O_NONBLOCK, 0, 0);
    int listening = sys6(__NR_fcntl, LISTENER, F_GETFD, 0, 0, 0, 0) >= 0;
    if (listening) {
        sys6(__NR_fcntl, LISTENER, F_SETFD, FD_CLOEXEC, 0, 0, 0);
        sys6(__NR_fcntl, LISTENER, F_SETFL, O_NONBLOCK, 0, 0, 0);
    }
    sys6(__NR_fcntl, AGENT, F_SETFD, FD_CLOEXEC, 0, 0, 0);
    for (;;) {
        static struct pollfd_k fds[2 + MAX_JOBS];
        static struct job *polled[MAX_JOBS];
        fds[0] = (struct pollfd_k){(int)signals, POLLIN, 0};
        fds[1] = (struct pollfd_k){LISTENER, POLLIN, 0};
        int nfds = listening ? 2 : 1, npolled = 0;
        for (int i = 0; i < njobs; i++) {
            if (!jobs[i].reading || jobs[i].conn < 0) continue;
            fds[nfds++] = (struct pollfd_k){jobs[i].conn, POLLIN, 0};
            polled[npolled++] = &jobs[i];
        }
        long n;
        if (signals >= 0) {
            n = sys6(__NR_ppoll, (long)fds, nfds, 0, 0, 8, 0);
        } else {
            /* No signalfd (never expected): the old loop, signals taken synchronously. */
            long sig = sys6(__NR_rt_sigtimedwait, (long)&all, (long)info, 0, 8, 0, 0);
            if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) sys6(__NR_kill, -1, SIGTERM, 0, 0, 0, 0);
            reap();
            continue;
        }
        if (n < 0) continue;
        int base = listening ? 2 : 1;
        /* Job connections first: the entries may move when jobs are reaped below. */
        for (int i = 0; i < npolled; i++)
            if (fds[base + i].revents) read_job(polled[i]);
        if (fds[0].revents) {
            while (sys6(__NR_read, signals, (long)info, sizeof info, 0, 0, 0) == (long)sizeof info) {
                unsigned sig = (unsigned)info[0] | (unsigned)info[1] << 8;
                /* kill(-1) from PID 1 reaches every other process of the pid namespace. */
                if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) sys6(__NR_kill, -1, SIGTERM, 0, 0, 0, 0);
                if (sig == ATOLL_AGENT_READY_SIGNAL) {
                    /* ssi_pid (offset 12) is the sender's pid, filled in by the kernel: only a job's
                     * own agent can make PID 1 read that job's connection. */
                    int sender = (int)((unsigned)info[12] | (unsigned)info[13] << 8 | (unsigned)info[14] << 16 | (unsigned)info[15] << 24);
                    struct job *j = find_job(sender);
                    if (j) j->reading = 1;
                }
            }
            /* SIGCHLD or anything else: reap in case several coalesced. */
            reap();
        }
        if (listening && fds[1].revents) {
            for (;;) {
                long conn = sys6(__NR_accept4, LISTENER, 0, 0, O_CLOEXEC, 0, 0);
                if (conn < 0) break;
                start_agent(conn);
            }
        }
    }
}
