/* Resolution-safe opens for unpacking image layers: every name an image's tar carries is
 * resolved below a directory Atoll owns, never through a symlink, a magic link or a mount. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "atoll_shim.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct layer_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH */
#define LAYER_RESOLVE (0x01 | 0x02 | 0x04 | 0x08)

int atoll_open_beneath(int dir_fd, const char *name, int flags, unsigned int mode) {
    struct layer_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = mode, .resolve = LAYER_RESOLVE};
    long fd;
    do {
        fd = syscall(SYS_openat2, dir_fd, name, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return fd < 0 ? -errno : (int)fd;
}

int atoll_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0) == 0 ? 0 : -errno;
}

long atoll_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    ssize_t n = lgetxattr(path, name, value, size);
    return n < 0 ? -errno : (long)n;
}
