/*
 * atoll-init — PID 1 of every Atoll sandbox.
 *
 * It keeps the sandbox's namespaces alive while no user process runs, reaps every zombie
 * (orphans of the sandbox are re-parented to it), and forwards a termination request to the
 * rest of the sandbox. It is freestanding — no libc, raw system calls only — so it is static,
 * a few kilobytes, and runs in any root filesystem. The runtime embeds it and executes it from
 * a sealed memfd: nothing in the sandbox can see or replace the binary.
 *
 * Its signals are all blocked and taken synchronously with rt_sigtimedwait, so there are no
 * handlers and no races between reaping and waiting.
 */
#include <asm/unistd.h>

#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGTERM 15
#define SIGCHLD 17
#define WNOHANG 1
#define PR_SET_NAME 15
#define PR_SET_DUMPABLE 4
#define SIG_SETMASK 2

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
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

static void reap(void) {
    int status;
    while (sys6(__NR_wait4, -1, (long)&status, WNOHANG, 0, 0, 0) > 0) {}
}

__attribute__((noreturn, used)) void init_main(void) {
    unsigned long all = ~0UL;
    char info[128];
    /* Non-dumpable: no process of the sandbox may ptrace or read the memory of PID 1. */
    sys6(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0);
    sys6(__NR_prctl, PR_SET_NAME, (long)"atoll-init", 0, 0, 0, 0);
    sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0, 0);
    for (;;) {
        long sig = sys6(__NR_rt_sigtimedwait, (long)&all, (long)info, 0, 8, 0, 0);
        if (sig == SIGCHLD) {
            reap();
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) {
            /* kill(-1) from PID 1 reaches every other process of the pid namespace. */
            sys6(__NR_kill, -1, SIGTERM, 0, 0, 0, 0);
        }
        /* Anything else (including -EINTR) falls through: reap in case SIGCHLD coalesced. */
        reap();
    }
}
