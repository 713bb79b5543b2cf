/// Programs the isolation tests run inside sandboxes.
///
/// Every probe that tries something a sandbox must not be able to do (mount, ptrace, module
/// loading, sysctl writes...) first proves that it runs inside the sandbox it was meant for — a
/// user namespace that is not the host's, and the hostname the test passes in — and refuses
/// with exit status 99 otherwise: run on the host by mistake, it would change the host.
enum Probes {
    /// Shared guard, prepended to every denial probe. argv[1] is the expected sandbox id.
    static let guardPrelude = #"""
        import os, sys
        def _inside_expected_sandbox():
            if len(sys.argv) < 2:
                return False
            with open("/proc/self/uid_map") as f:
                fields = f.read().split()
            host_namespace = fields[:3] == ["0", "0", "4294967295"]
            return not host_namespace and os.uname().nodename == sys.argv[1]
        if not _inside_expected_sandbox():
            print("REFUSE: not inside the expected sandbox; not probing", flush=True)
            sys.exit(99)
        """#

    /// Attempts each forbidden operation and prints one JSON object: name -> [return, errno].
    static let denials =
        guardPrelude + #"""

            import ctypes, json, os, platform, time
            libc = ctypes.CDLL(None, use_errno=True)
            NR = {
                "x86_64": {"init_module": 175, "finit_module": 313, "delete_module": 176, "add_key": 248, "keyctl": 250,
                           "bpf": 321, "kexec_load": 246, "unshare": 272, "setns": 308},
                "aarch64": {"init_module": 105, "finit_module": 273, "delete_module": 106, "add_key": 217, "keyctl": 219,
                            "bpf": 280, "kexec_load": 104, "unshare": 97, "setns": 268},
            }[platform.machine()]
            results = {}
            def attempt(name, fn):
                ctypes.set_errno(0)
                r = fn()
                results[name] = [r, ctypes.get_errno()]

            attempt("mount", lambda: libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None))
            attempt("umount", lambda: libc.umount2(b"/proc", 2))
            # ptrace: PID 1 (not our child), and a same-user process that is not our child either.
            PTRACE_ATTACH = 16
            attempt("ptrace_init", lambda: libc.ptrace(PTRACE_ATTACH, 1, None, None))
            r, w = os.pipe()
            if os.fork() == 0:
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                os.write(w, str(pid).encode())
                os._exit(0)
            os.wait()
            grandchild = int(os.read(r, 32))
            attempt("ptrace_nonchild", lambda: libc.ptrace(PTRACE_ATTACH, grandchild, None, None))
            os.kill(grandchild, 9)
            attempt("init_module", lambda: libc.syscall(NR["init_module"], None, 0, b""))
            fd = os.open("/dev/null", os.O_RDONLY)
            attempt("finit_module", lambda: libc.syscall(NR["finit_module"], fd, b"", 0))
            attempt("delete_module", lambda: libc.syscall(NR["delete_module"], b"loop", 0))
            attempt("keyctl", lambda: libc.syscall(NR["keyctl"], 1, None))  # KEYCTL_JOIN_SESSION_KEYRING
            attempt("add_key", lambda: libc.syscall(NR["add_key"], b"user", b"atoll-probe", b"x", 1, -3))
            attempt("bpf", lambda: libc.syscall(NR["bpf"], 0, None, 0))
            attempt("kexec_load", lambda: libc.syscall(NR["kexec_load"], 0, 0, None, 0))
            attempt("unshare_user", lambda: libc.syscall(NR["unshare"], 0x10000000))
            attempt("unshare_mount", lambda: libc.syscall(NR["unshare"], 0x00020000))
            attempt("sethostname", lambda: libc.sethostname(b"escaped", 7))
            for path, value in [("/proc/sys/kernel/hostname", "escaped"), ("/proc/sys/vm/drop_caches", "3"),
                                ("/proc/sys/kernel/core_pattern", "|/tmp/evil"), ("/sys/kernel/mm/transparent_hugepage/enabled", "never")]:
                try:
                    with open(path, "w") as f:
                        f.write(value)
                    results["write " + path] = [0, 0]
                except OSError as e:
                    results["write " + path] = [-1, e.errno]
            print(json.dumps(results), flush=True)
            """#

    /// Makes a system call through the i386 ABI (`int 0x80`), then through the x32 ABI.
    /// The seccomp profile must kill the process at the first one (SIGSYS).
    static let foreignABI =
        guardPrelude + #"""

            import ctypes, mmap, platform
            if platform.machine() != "x86_64":
                print("SKIP: foreign ABIs are an x86_64 concern"); sys.exit(0)
            which = sys.argv[2]
            if which == "i386":
                code = bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 20 (getpid); int 0x80; ret
                buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
                buf.write(code)
                fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
                print("about to call", flush=True)
                print("SURVIVED i386", fn(), flush=True)
            else:
                libc = ctypes.CDLL(None, use_errno=True)
                print("about to call", flush=True)
                print("SURVIVED x32", libc.syscall(0x40000000 + 39), flush=True)
            """#
}
