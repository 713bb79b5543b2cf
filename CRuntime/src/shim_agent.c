/*
 * The runtime's side of the sandbox agent's socket (see atoll_agent.h): the listening socket PID 1
 * inherits, connections to it, and messages with descriptors. Everything here runs in the calling
 * (multithreaded) process; every descriptor is close-on-exec and no call raises SIGPIPE.
 */
#define _GNU_SOURCE
#include "shim_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* "/proc/self/fd/<dir_fd>/<name>" in `addr`; fails if it does not fit sun_path. */
static int agent_address(int dir_fd, const char *name, struct sockaddr_un *addr, atoll_error *err) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    int n = snprintf(addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/%s", dir_fd, name);
    if (n < 0 || (size_t)n >= sizeof addr->sun_path) return atoll_fail(err, ENAMETOOLONG, "socket address", name);
    return 0;
}

int atoll_agent_listen(int dir_fd, const char *name, int *fd_out, atoll_error *err) {
    struct sockaddr_un addr;
    if (agent_address(dir_fd, name, &addr, err) < 0) return -err->err;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return atoll_fail(err, errno, "socket(AF_UNIX)", name);
    if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT) {
        int e = errno;
        close(fd);
        return atoll_fail(err, e, "unlinkat", name);
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return atoll_fail(err, e, "bind", name);
    }
    *fd_out = fd;
    return 0;
}

int atoll_agent_connect(int dir_fd, const char *name, int *fd_out, atoll_error *err) {
    struct sockaddr_un addr;
    if (agent_address(dir_fd, name, &addr, err) < 0) return -err->err;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return atoll_fail(err, errno, "socket(AF_UNIX)", name);
    /* Requests carry argv and environment; let one of up to ATOLL_AGENT_MESSAGE_MAX fit (root may
     * exceed net.core.wmem_max). Failing that, the default buffer still takes ordinary ones. */
    int size = 2 * 1024 * 1024;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    int r;
    do {
        r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(fd);
        return atoll_fail(err, e, "connect", name);
    }
    *fd_out = fd;
    return 0;
}

int atoll_agent_send(int fd, const void *data, size_t len, const int *fds, int nfds, atoll_error *err) {
    if (nfds < 0 || nfds > 8) return atoll_fail(err, EINVAL, "sendmsg", "too many descriptors");
    struct iovec iov = {(void *)data, len};
    char control[CMSG_SPACE(8 * sizeof(int))];
    memset(control, 0, sizeof control);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t r;
    do {
        r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return atoll_fail(err, errno, "sendmsg", "sandbox agent");
    if ((size_t)r != len) return atoll_fail(err, EMSGSIZE, "sendmsg", "sandbox agent");
    return 0;
}

long atoll_agent_peek(int fd, int timeout_ms, atoll_error *err) {
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return atoll_fail(err, errno, "poll", "sandbox agent");
    if (r == 0) return atoll_fail(err, ETIMEDOUT, "poll", "sandbox agent");
    ssize_t size;
    do {
        size = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    } while (size < 0 && errno == EINTR);
    if (size < 0) {
        if (errno == ECONNRESET) return 0;
        return atoll_fail(err, errno, "recv", "sandbox agent");
    }
    return (long)size;
}

long atoll_agent_recv(int fd, void *buf, size_t cap, int *fds_out, int *nfds, atoll_error *err) {
    struct iovec iov = {buf, cap};
    char control[CMSG_SPACE(8 * sizeof(int))];
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    int capacity = nfds ? *nfds : 0;
    if (nfds) *nfds = 0;
    ssize_t r;
    do {
        r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return atoll_fail(err, errno, "recvmsg", "sandbox agent");
    /* Descriptors the caller has room for are handed over (close-on-exec); the rest are closed. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[8];
        memcpy(fds, CMSG_DATA(c), (n > 8 ? 8 : n) * sizeof(int));
        for (size_t i = 0; i < n && i < 8; i++) {
            if (fds_out && nfds && *nfds < capacity)
                fds_out[(*nfds)++] = fds[i];
            else
                close(fds[i]);
        }
    }
    if (mh.msg_flags & MSG_TRUNC) {
        for (int i = 0; nfds && i < *nfds; i++) close(fds_out[i]);
        if (nfds) *nfds = 0;
        return atoll_fail(err, EMSGSIZE, "recvmsg", "sandbox agent");
    }
    return (long)r;
}
