/// The program each interpreter context runs inside the sandbox (`python3 -u -c`), as the
/// sandbox's user: a loop that reads one JSON request per line on stdin (`{"code", "env"}`),
/// runs the code in one namespace kept for the context's life (variables and imports carry
/// over), and answers on its own copy of stdout with JSON lines: `{"t":"stdout"|"stderr",
/// "text"}` as output is produced, `{"t":"error","name","value","traceback"}` for an exception,
/// then `{"t":"done"}`. File descriptors 1 and 2 are pipes the program reads, so output of
/// child processes arrives too; a marker written to both after each run tells it that
/// everything of that run was forwarded. SIGINT (a run's timeout) raises KeyboardInterrupt in
/// the code, which is reported as its error, and the context lives on.
enum InterpreterDriver {
    static let python = #"""
        import ast, codecs, json, os, signal, sys, threading, traceback
        running = False
        def interrupt(number, frame):
            if running:
                raise KeyboardInterrupt("interrupted: the run's timeout passed")
        signal.signal(signal.SIGINT, interrupt)
        proto = os.dup(1)
        requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        lock = threading.Lock()
        def send(message):
            data = (json.dumps(message) + "\n").encode()
            with lock:
                view = memoryview(data)
                while view:
                    view = view[os.write(proto, view):]
        MARK = b"\x00atoll-run-end\x00"
        seen = {1: threading.Event(), 2: threading.Event()}
        def pump(fd, kind, event):
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            pending = b""
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                pending += chunk
                while True:
                    at = pending.find(MARK)
                    if at < 0:
                        keep = 0
                        for n in range(len(MARK) - 1, 0, -1):
                            if pending.endswith(MARK[:n]):
                                keep = n
                                break
                        body, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
                        text = decoder.decode(body)
                        if text:
                            send({"t": kind, "text": text})
                        break
                    text = decoder.decode(pending[:at])
                    if text:
                        send({"t": kind, "text": text})
                    pending = pending[at + len(MARK):]
                    event.set()
        for fd, kind in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            threading.Thread(target=pump, args=(r, kind, seen[fd]), daemon=True).start()
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        def run(code):
            tree = ast.parse(code, "<cell>", "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, "<cell>", "exec"), namespace)
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), namespace)
                if value is not None:
                    print(repr(value))
        for line in requests:
            request = json.loads(line)
            saved = dict(os.environ)
            os.environ.update(request.get("env") or {})
            try:
                try:
                    running = True
                    run(request["code"])
                except BaseException as error:
                    tb = error.__traceback__
                    while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
                        tb = tb.tb_next
                    frames = traceback.format_exception(type(error), error, tb)
                    send({"t": "error", "name": type(error).__name__, "value": str(error), "traceback": "".join(frames)})
            except BaseException:
                pass
            finally:
                running = False
                os.environ.clear()
                os.environ.update(saved)
            for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
                try:
                    stream.flush()
                except BaseException:
                    pass
                seen[fd].clear()
                os.write(fd, MARK)
            for fd in (1, 2):
                seen[fd].wait(5)
            send({"t": "done"})
        """#
}
