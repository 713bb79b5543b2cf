/*
 * shim_pty.c — the runtime's side of a sandbox's terminal: the master end arrives from the
 * sandbox's agent (SCM_RIGHTS), so it is checked before it is used, and resized from here.
 */
#define _GNU_SOURCE
#include "shim_internal.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

int atoll_pty_check_master(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    /* Every devpts instance's ptmx is the character device 5:2; a master answers TIOCGPTN. */
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2) return -ENOTTY;
    unsigned int index;
    if (ioctl(fd, TIOCGPTN, &index) < 0) return -errno;
    return 0;
}

int atoll_pty_resize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}
