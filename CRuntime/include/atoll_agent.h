/*
 * atoll_agent.h — the wire protocol between Atoll's runtime (the daemon or an embedded CLI) and
 * atoll-agent, the helper that carries out execs and file operations *inside* a sandbox with the
 * sandbox's own credentials.
 *
 * How a request travels: each sandbox's PID 1 (atoll-init) holds a listening SOCK_SEQPACKET
 * socket bound to `<data>/sandboxes/<id>/agent.sock` — a path only the host can reach. The
 * runtime connects once per request; PID 1 forks, and the child executes the embedded agent from
 * a sealed memfd with the connection as `ATOLL_AGENT_CONNECTION_FD`. The agent reads one request,
 * answers with one or more messages and exits. Nothing of the runtime's memory ever enters the
 * sandbox, and everything the agent does is checked by the kernel as for the sandbox's own root.
 *
 * Every message is one packet: an `atoll_agent_header`, then `numbers` little-endian int64
 * values, then `strings` NUL-terminated strings, `length` bytes in all. Both sides treat what
 * they receive as untrusted: counts and lengths are checked before anything is read.
 *
 * This header holds only types and constants (it is included by the freestanding agent build,
 * the shim and Swift).
 */
#ifndef ATOLL_AGENT_H
#define ATOLL_AGENT_H

#include <stdint.h>

/// "AGT1": the protocol's version; a message with another magic is refused.
#define ATOLL_AGENT_MAGIC 0x31544741u
/// Largest message either side accepts (a request's argv and environment must fit).
#define ATOLL_AGENT_MESSAGE_MAX (1024u * 1024u)
/// Replies that list things are sent in batches of at most this many bytes of strings.
#define ATOLL_AGENT_BATCH_BYTES (48u * 1024u)

/// Descriptors atoll-init receives at spawn: the listening socket and the agent's memfd.
#define ATOLL_INIT_LISTENER_FD 3
#define ATOLL_INIT_AGENT_FD    4
/// The descriptor the agent finds its connection on.
#define ATOLL_AGENT_CONNECTION_FD 3

typedef struct atoll_agent_header {
    uint32_t magic;
    uint16_t kind;    /* enum atoll_agent_kind */
    uint16_t numbers; /* int64 values after the header */
    uint32_t strings; /* NUL-terminated strings after the numbers */
    uint32_t length;  /* bytes of the whole message, header included */
} atoll_agent_header;

enum atoll_agent_kind {
    /* Requests (runtime → agent); the first message of a connection. */
    ATOLL_AGENT_EXEC = 1, /* numbers: argc, envc, flags; strings: user, cwd, file, argv…, env…;
                             descriptors: stdin, stdout, stderr */
    ATOLL_AGENT_FILE = 2, /* numbers: op, flags, mode (-1: none), limit;
                             strings: user, path, second, third (see enum atoll_agent_file_op);
                             descriptors: a pipe end for READ (write end) and WRITE (read end) */

    /* Control (runtime → agent) while a request runs. */
    ATOLL_AGENT_SIGNAL = 10, /* numbers: signal — sent to the exec's whole process group */
    ATOLL_AGENT_COMMIT = 11, /* numbers: bytes — every byte of an upload was written to its pipe */

    /* Replies (agent → runtime). */
    ATOLL_AGENT_ERROR = 20,   /* numbers: errno; strings: call, path (inside the sandbox), detail */
    ATOLL_AGENT_STARTED = 21, /* numbers: pid (inside the sandbox); the agent executes the process next;
                                 with ATOLL_EXEC_PTY, the terminal's master end comes along (SCM_RIGHTS) */
    ATOLL_AGENT_EXIT = 22,    /* numbers: exited (1) or killed by a signal (0), code or signal — sent by
                                 PID 1 when it reaps the agent (or the process it became) */
    ATOLL_AGENT_ENTRY = 23,   /* per entry, numbers: mode, uid, gid, size, mtime s, mtime ns, nlink;
                                 strings: name, path, link target, owner name, group name */
    ATOLL_AGENT_MATCH = 24,   /* per match, numbers: line; strings: file, line content */
    ATOLL_AGENT_PATH = 25,    /* strings: paths */
    ATOLL_AGENT_DONE = 26,    /* numbers: count, truncated (0/1); strings: the user's home */
    ATOLL_AGENT_ACCOUNT = 27, /* numbers: uid, gid; strings: name, home, shell */
};

/// The real-time signal an exec's agent sends PID 1 once it has taken its request: from then on
/// PID 1 reads that connection (signals for the process group, the runtime hanging up) and, when
/// the process ends, reports the exit on it (see atoll-init.c).
#define ATOLL_AGENT_READY_SIGNAL 40

/// Numbers per entry of an `ATOLL_AGENT_ENTRY` message, and strings per entry.
#define ATOLL_AGENT_ENTRY_NUMBERS 7
#define ATOLL_AGENT_ENTRY_STRINGS 5

/// Flags of an exec request.
enum atoll_agent_exec_flags {
    /* Add HOME, USER, LOGNAME and SHELL from the user's account where the environment has none. */
    ATOLL_EXEC_ACCOUNT_ENV = 1,
    /* A new pseudo-terminal of the sandbox's own devpts instead of the three descriptors (the
       request carries none): numbers 4 and 5 are its rows and columns. The process gets the
       terminal's other end as stdin, stdout, stderr and controlling terminal; the master end goes
       back to the runtime with STARTED. */
    ATOLL_EXEC_PTY = 2,
};

/// Largest terminal the agent makes (Daytona's limit too).
#define ATOLL_PTY_MAX_SIZE 1000

/// File operations. `user` names the account whose home relative paths start at and who owns
/// what is created; paths are normalised lexically, then resolved by the kernel inside the
/// sandbox's own root.
enum atoll_agent_file_op {
    ATOLL_FILE_STAT = 1,        /* path (not following a final symlink) → ENTRY */
    ATOLL_FILE_LIST = 2,        /* directory path → ENTRY batches, DONE (limit: entries) */
    ATOLL_FILE_READ = 3,        /* path → ENTRY, the bytes on the pipe, DONE(bytes) (limit: bytes) */
    ATOLL_FILE_WRITE = 4,       /* path, mode for a new file; bytes from the pipe until EOF, then
                                   COMMIT from the runtime → ENTRY. Written to a temporary file and
                                   renamed over the target, so a failed upload changes nothing. */
    ATOLL_FILE_MKDIR = 5,       /* path, mode → ENTRY */
    ATOLL_FILE_DELETE = 6,      /* path → DONE(entries removed) */
    ATOLL_FILE_MOVE = 7,        /* path, second: destination → DONE */
    ATOLL_FILE_SETPERM = 8,     /* path, mode (-1: keep), second: owner, third: group ("" keeps) → ENTRY */
    ATOLL_FILE_SEARCH = 9,      /* path, second: glob pattern for names → PATH batches, DONE */
    ATOLL_FILE_FIND = 10,       /* path, second: text → MATCH batches, DONE */
    ATOLL_FILE_MKFIFO = 11,     /* path, mode → DONE */
    ATOLL_FILE_FIFO_WRITE = 12, /* path, second: bytes written once, without blocking → DONE */
    ATOLL_FILE_ACCOUNT = 13,    /* → ACCOUNT of `user` */
    ATOLL_FILE_FIFO_OPEN = 14,  /* path[, mode ≥ 0: made first, owned by `user`] → DONE with the FIFO
                                   opened for writing (SCM_RIGHTS): opened
                                   read-write, so it never waits for a reader and its holder is a
                                   writer until it closes it (then readers see EOF) */
    ATOLL_FILE_OPEN_READ = 15,  /* path → DONE with the regular file opened read-only (SCM_RIGHTS):
                                   following a growing log without an agent per read */
};

enum atoll_agent_file_flags {
    ATOLL_FILE_PARENTS = 1,    /* WRITE, MKDIR: create missing parent directories */
    ATOLL_FILE_RECURSIVE = 2,  /* DELETE: a directory and everything below it */
    ATOLL_FILE_EXCLUSIVE = 4,  /* WRITE: fail if the file exists */
    ATOLL_FILE_MISSING_OK = 8, /* DELETE: a missing path is not an error */
};

/// Bounds of the agent's tree walks (search, find): it holds one directory open per level.
#define ATOLL_AGENT_WALK_DEPTH   128
#define ATOLL_AGENT_WALK_ENTRIES 200000
/// Largest file a content search reads.
#define ATOLL_AGENT_FIND_FILE_MAX (8u << 20)
/// Deepest tree a recursive delete removes (it holds two descriptors whatever the depth).
#define ATOLL_AGENT_DELETE_DEPTH 100000
/// Ids inside a sandbox: its user namespace maps exactly 0..65535.
#define ATOLL_SANDBOX_ID_COUNT 65536u

#endif
