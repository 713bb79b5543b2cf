/*
 * Host-side helpers: user namespaces for idmapping, loop devices, sealed memfds and pidfds. These
 * run in the calling (multithreaded) process; the one short-lived child (the user namespace
 * holder) only blocks on a pipe and exits. Nothing here touches a sandbox's files: that is the
 * sandbox agent's job, with the sandbox's own credentials (atoll_agent.h).
 */
#define _GNU_SOURCE
#include "shim_internal.h"

#include <sys/prctl.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL   0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW   0x0004
#define F_SEAL_WRITE  0x0008
#endif

static int write_file(const char *path, const char *data, atoll_error *err) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return atoll_fail(err, errno, "open", path);
    size_t len = strlen(data);
    ssize_t w = write(fd, data, len);
    int e = errno;
    close(fd);
    if (w != (ssize_t)len) return atoll_fail(err, w < 0 ? e : EIO, "write", path);
    return 0;
}

int atoll_userns_create(uint32_t uid_base, uint32_t gid_base, uint32_t count, int *fd_out, atoll_error *err) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return atoll_fail(err, errno, "pipe2", "");
    struct atoll_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    long pid = atoll_clone3(&args);
    if (pid == 0) {
        /* Holds the namespace until the parent has an fd to it (EOF on the pipe). */
        char c;
        close(pipefd[1]);
        while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(pipefd[0]);
    if (pid < 0) {
        int e = errno;
        close(pipefd[1]);
        return atoll_fail(err, e, "clone3(CLONE_NEWUSER)", "");
    }
    char path[64], map[96];
    int rc = 0;
    snprintf(map, sizeof map, "0 %u %u\n", uid_base, count);
    snprintf(path, sizeof path, "/proc/%ld/uid_map", pid);
    rc = write_file(path, map, err);
    if (rc == 0) {
        snprintf(map, sizeof map, "0 %u %u\n", gid_base, count);
        snprintf(path, sizeof path, "/proc/%ld/gid_map", pid);
        rc = write_file(path, map, err);
    }
    int fd = -1;
    if (rc == 0) {
        snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) rc = atoll_fail(err, errno, "open", path);
    }
    close(pipefd[1]);
    siginfo_t info;
    while (waitid(P_PID, (id_t)pid, &info, WEXITED) < 0 && errno == EINTR) {}
    if (rc < 0) return rc;
    *fd_out = fd;
    return 0;
}

int atoll_loop_attach(const char *image, int *index_out, int *fd_out, atoll_error *err) {
    int backing = open(image, O_RDWR | O_CLOEXEC);
    if (backing < 0) return atoll_fail(err, errno, "open", image);
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        int e = errno;
        close(backing);
        return atoll_fail(err, e, "open", "/dev/loop-control");
    }
    int rc = atoll_fail(err, EBUSY, "ioctl(LOOP_CONFIGURE)", image);
    /* LOOP_CTL_GET_FREE races with every other user of loop devices: retry when one is taken. */
    for (int attempt = 0; attempt < 64; attempt++) {
        int index = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (index < 0) {
            rc = atoll_fail(err, errno, "ioctl(LOOP_CTL_GET_FREE)", "/dev/loop-control");
            break;
        }
        char dev[32];
        snprintf(dev, sizeof dev, "/dev/loop%d", index);
        int lfd = -1;
        for (int wait = 0; wait < 100; wait++) {
            lfd = open(dev, O_RDWR | O_CLOEXEC);
            if (lfd >= 0 || errno != ENOENT) break;
            struct timespec ts = {0, 1000000}; /* devtmpfs may lag behind LOOP_CTL_GET_FREE */
            nanosleep(&ts, NULL);
        }
        if (lfd < 0) {
            rc = atoll_fail(err, errno, "open", dev);
            break;
        }
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (uint32_t)backing;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        atoll_strlcpy((char *)cfg.info.lo_file_name, image, sizeof cfg.info.lo_file_name);
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
            *index_out = index;
            *fd_out = lfd;
            rc = 0;
            break;
        }
        int e = errno;
        close(lfd);
        if (e != EBUSY) {
            rc = atoll_fail(err, e, "ioctl(LOOP_CONFIGURE)", dev);
            break;
        }
    }
    close(ctl);
    close(backing);
    return rc;
}

int atoll_sealed_memfd(const char *name, const void *data, size_t size, int *fd_out, atoll_error *err) {
    /* MFD_EXEC (Linux 6.3) states the intent explicitly where vm.memfd_noexec is set. */
    int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return atoll_fail(err, errno, "memfd_create", name);
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return atoll_fail(err, e, "write(memfd)", name);
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0555) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        int e = errno;
        close(fd);
        return atoll_fail(err, e, "fcntl(F_ADD_SEALS)", name);
    }
    *fd_out = fd;
    return 0;
}

int atoll_pidfd_open(pid_t pid, atoll_error *err) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        char buf[24];
        atoll_utoa((uint64_t)pid, buf);
        return atoll_fail(err, errno, "pidfd_open", buf);
    }
    return (int)fd;
}

int atoll_pidfd_signal(int pidfd, int sig, atoll_error *err) {
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0) return atoll_fail(err, errno, "pidfd_send_signal", "");
    return 0;
}

int atoll_pidfd_wait(int pidfd, int block, atoll_exit *out, atoll_error *err) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r;
    do {
        r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | (block ? 0 : WNOHANG));
    } while (r < 0 && errno == EINTR);
    if (r < 0) return atoll_fail(err, errno, "waitid(P_PIDFD)", "");
    if (info.si_pid == 0) return 0;
    out->exited = info.si_code == CLD_EXITED;
    out->status = info.si_status;
    return 1;
}

int atoll_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int atoll_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

static int signal_pipe_write = -1;

static void signal_to_pipe(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    ssize_t ignored = write(signal_pipe_write, &byte, 1);
    (void)ignored;
    errno = saved;
}

int atoll_signal_pipe(const int *signals, int count, atoll_error *err) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return atoll_fail(err, errno, "pipe2", "");
    /* The reader blocks; only the handler's end must never block. */
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) & ~O_NONBLOCK);
    signal_pipe_write = fds[1];
    for (int i = 0; i < count; i++) {
        struct sigaction current;
        if (sigaction(signals[i], NULL, &current) == 0 && current.sa_handler == SIG_IGN && signals[i] != SIGTERM) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = signal_to_pipe;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signals[i], &sa, NULL) < 0) return atoll_fail(err, errno, "sigaction", "");
    }
    return fds[0];
}
