"""Which calls of the official Daytona Python SDK atolld serves, derived from the installed SDK.

Run through scripts/sdk-coverage (it provides the SDK's venv and, unless DAYTONA_API_URL and
DAYTONA_API_KEY name one, a private atolld). Directly: `python sdk_coverage.py [--markdown |
--json] [--no-probe]` with the venv's python, DAYTONA_API_URL (ending in /api) and
DAYTONA_API_KEY set.

How calls are found. Every public method of the SDK's sync classes (`daytona._sync.*`) is read
with `ast`; the routes it reaches are:
  * attribute calls and references on objects of the generated clients (`daytona_api_client`,
    `daytona_toolbox_api_client`, `daytona_analytics_api_client`), typed from the SDK's own
    annotations (`self._api_client: ProcessApi = ...`, constructor parameters, return types);
    each generated `foo` has a `_foo_serialize` whose `method=` and `resource_path=` give the route;
  * `_foo_serialize` calls the SDK makes itself to send the request over raw httpx (file
    transfers) or a WebSocket (a function that rewrites the URL to `ws`), including a literal
    `.replace("/old/path", "/new/path")` of the serialized URL (the PTY's create-connect);
  * calls into other methods of the same class, SDK objects it holds or builds (`sandbox.start`,
    `Sandbox(...)` whose constructor may fetch the toolbox URL) and static helpers of SDK classes,
    up to MAX_DEPTH levels;
  * as a last resort, for methods with none of the above that still talk HTTP through httpx,
    requests or httpx_ws, the literal URL paths in their source.
A method's primary route is what it is for: the first one it calls itself, before those its
helpers or other objects call; the others are secondary (waits, refreshes, optional features).

How "served" is decided. Every route is sent once to atolld with a sandbox id that does not exist
and harmless values for other path parameters, so nothing is created or changed: a 501, or a 404
or 405 with the router's generic "Not Found", means no route matched; anything else (a 404 naming
the sandbox, a 400, ...) means a route exists. Routes of the separate analytics service are
listed but not probed. A method is served when its primary route is; "partly" when a secondary
route is not.

Count. This finds 165 methods in 0.226.1, the figure of the hand-made table in the docs. Left
out on purpose: `Daytona()` itself (its Socket.IO connection is a background event channel, not
a call), and PtyHandle's methods: they talk over the WebSocket `create_pty_session` /
`connect_pty_session` opened, or call back into Process.resize_pty_session / kill_pty_session,
which are counted.

Limits of the probe: a route whose literal segment another SDK route has as a parameter
(GET /process/session/entrypoint beside /process/session/{sessionId}) may be answered by that
route's handler, which a missing sandbox hides; such routes are listed as "unsure". A WebSocket
route counts as served when its path has a handler, whether or not that handler upgrades.
"""

from __future__ import annotations

import argparse
import ast
import base64
import http.client
import importlib
import importlib.metadata
import inspect
import json
import os
import pkgutil
import re
import typing
import urllib.parse

SDK_PACKAGE = "daytona._sync"
# Generated client package → the base its resource paths are relative to.
GENERATED = {
    "daytona_api_client": "api",  # {api}: DAYTONA_API_URL, e.g. http://host/api
    "daytona_toolbox_api_client": "toolbox",  # {toolbox}/{sandboxId}: the sandbox's toolboxProxyUrl
    "daytona_analytics_api_client": "analytics",  # a separate service whose URL /config announces
}
# Objects people reach first; the access paths of everything else are derived from them.
ROOTS = {"Daytona": "daytona", "Sandbox": "sandbox"}
MAX_DEPTH = 5  # Sandbox.start → wait_for_sandbox_start → _wait_for_state → refresh_data → GET
PROBE_SANDBOX = "nonexistent-coverage-probe"
PATH_LITERAL = re.compile(r"^/[a-z][A-Za-z0-9_\-/{}.]*$")
HTTP_CLIENT_HINTS = {"httpx", "httpx_ws", "requests", "_http_client", "connect_ws"}


# ---------------------------------------------------------------------------------------------
# The generated clients: every operation's method, path and parameters.


class Operation:
    """One generated client method, e.g. SandboxApi.get_sandbox → GET /sandbox/{sandboxIdOrName}."""

    def __init__(self, api_class, name, base, http_method, path, path_params, query_params):
        self.api_class = api_class
        self.name = name
        self.base = base
        self.http_method = http_method
        self.path = path
        self.path_params = path_params  # wire name → python parameter name
        self.query_params = query_params  # python parameter name → wire name

    @property
    def label(self):
        return f"{self.api_class.__name__}.{self.name}"


def index_generated_clients():
    """{api class: {operation name: Operation}} for every generated client package."""
    index = {}
    for package_name, base in GENERATED.items():
        package = importlib.import_module(package_name + ".api")
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.api.{info.name}")
            for cls in vars(module).values():
                if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                    continue
                operations = {}
                for attr, function in vars(cls).items():
                    match = re.fullmatch(r"_(\w+)_serialize", attr)
                    if not match or not callable(function):
                        continue
                    source = inspect.getsource(function)
                    method = re.search(r"method='(\w+)'", source)
                    path = re.search(r"resource_path='([^']*)'", source)
                    if not (method and path):
                        continue
                    path_params = dict(re.findall(r"_path_params\['(\w+)'\] = (\w+)", source))
                    query_params = {py: wire for wire, py in re.findall(r"_query_params\.append\(\('(\w+)', (\w+)\)\)", source)}
                    name = match.group(1)
                    operations[name] = Operation(cls, name, base, method.group(1), path.group(1), path_params, query_params)
                if operations:
                    index[cls] = operations
    return index


# ---------------------------------------------------------------------------------------------
# The SDK's classes, read from source.


class SdkClass:
    def __init__(self, cls, node, module):
        self.cls = cls
        self.node = node
        self.module = module
        # Overloads repeat a name; the last definition is the implementation.
        self.methods = {n.name: n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.attributes = {}  # attribute → class of the object it holds
        self.returns = {}  # method → class of what it returns

    @property
    def name(self):
        return self.cls.__name__


def annotation_class(node, module):
    """The class an annotation names (`X`, `"X"`, `X | None`), or None."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return annotation_class(node.left, module) or annotation_class(node.right, module)
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
        return value if inspect.isclass(value) else None
    return None


def load_sdk_classes():
    """{class: SdkClass} for every class of the SDK's sync modules and the handles they return."""
    classes = {}
    package = importlib.import_module(SDK_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{SDK_PACKAGE}.{info.name}")
        tree = ast.parse(inspect.getsource(module))
        for node in tree.body:
            cls = getattr(module, node.name, None) if isinstance(node, ast.ClassDef) else None
            if inspect.isclass(cls) and cls.__module__ == module.__name__:
                classes[cls] = SdkClass(cls, node, module)
    for sdk in classes.values():
        for name, function in sdk.methods.items():
            arguments = function.args.args + function.args.kwonlyargs
            parameters = {a.arg: annotation_class(a.annotation, sdk.module) for a in arguments}
            returned = annotation_class(function.returns, sdk.module)
            if returned:
                sdk.returns[name] = returned
                if any(isinstance(d, ast.Name) and d.id == "property" for d in function.decorator_list):
                    sdk.attributes[name] = returned
            for node in ast.walk(function):
                targets, annotation, value = [], None, None
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, ast.AnnAssign):
                    targets, annotation, value = [node.target], node.annotation, node.value
                for target in targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                        held = annotation_class(annotation, sdk.module)
                        if held is None and isinstance(value, ast.Call):
                            held = annotation_class(value.func, sdk.module)
                        if held is None and isinstance(value, ast.Name):
                            held = parameters.get(value.id)
                        if held is not None:
                            sdk.attributes.setdefault(target.attr, held)
    return classes


# ---------------------------------------------------------------------------------------------
# Which routes a method reaches.


class Route:
    """One HTTP call: a generated operation (or a literal path), as the SDK sends it."""

    def __init__(self, operation, ws=False, path=None, query=None, via="client"):
        self.operation = operation  # None for a literal path found in the source
        self.base = operation.base if operation else "toolbox"  # the SDK's raw HTTP goes to the toolbox
        self.http_method = "GET" if ws else (operation.http_method if operation else "GET")
        self.path = path or operation.path
        self.query = query or {}
        self.ws = ws
        self.via = via  # client: the generated method sends it; raw: the SDK sends the serialized request itself
        self.result = None  # filled by the probe

    @property
    def key(self):
        return (self.base, self.http_method, self.path, tuple(sorted(self.query.items())), self.ws)

    def display(self, aligned=True):
        prefix = {"api": "{api}", "toolbox": "{toolbox}/{sandboxId}", "analytics": "{analytics}"}[self.base]
        query = "?" + urllib.parse.urlencode(self.query) if self.query else ""
        method = f"{self.http_method:<6}" if aligned else self.http_method
        return f"{method} {'ws ' if self.ws else ''}{prefix}{self.path}{query}"


class Finding:
    """A route a method reaches, with what makes it primary or secondary."""

    def __init__(self, route, other_object, depth, order):
        self.route = route
        self.rank = (route.base == "analytics", other_object, depth, order)


class Analyzer:
    """Walks a method's AST, typing expressions from the SDK's annotations, and collects routes."""

    def __init__(self, classes, operations):
        self.classes = classes
        self.operations = operations
        self.order = 0

    def routes_of(self, sdk, method_name):
        """The routes `sdk.method_name` reaches, primary first."""
        self.order = 0
        findings = []
        self.visit_method(sdk, method_name, findings, depth=0, other_object=False, stack=())
        if not findings:
            findings = self.literal_routes(sdk.methods[method_name])
        unique = {}
        for finding in sorted(findings, key=lambda f: f.rank):
            unique.setdefault(finding.route.key, finding.route)
        return list(unique.values())

    def visit_method(self, sdk, method_name, findings, depth, other_object, stack):
        function = sdk.methods.get(method_name)
        if function is None or (sdk.cls, method_name) in stack or depth > MAX_DEPTH:
            return
        stack = stack + ((sdk.cls, method_name),)
        arguments = function.args.args + function.args.kwonlyargs
        env = {a.arg: ("instance", annotation_class(a.annotation, sdk.module)) for a in arguments}
        env["self"] = ("instance", sdk.cls)
        ws = self.uses_websocket(function)
        rewrites = self.path_rewrites(function)
        skipped_functions, skipped_attributes = self.stored_callbacks(function, sdk.module)

        def type_of(node):
            """("instance" | "class", class) of an expression, when the source tells."""
            if isinstance(node, ast.Name):
                if node.id in env:
                    return env[node.id]
                value = getattr(sdk.module, node.id, None)
                return ("class", value) if inspect.isclass(value) else None
            if isinstance(node, ast.Attribute):
                owner = type_of(node.value)
                if owner and owner[0] == "instance" and owner[1] in self.classes:
                    held = self.classes[owner[1]].attributes.get(node.attr)
                    return ("instance", held) if held else None
                return None
            if isinstance(node, ast.Call):
                callee = type_of(node.func)
                if callee and callee[0] == "class":
                    return ("instance", callee[1])
                if isinstance(node.func, ast.Attribute):
                    owner = type_of(node.func.value)
                    if owner and owner[1] in self.classes:
                        returned = self.classes[owner[1]].returns.get(node.func.attr)
                        return ("instance", returned) if returned else None
            return None

        def visit(node):
            if node in skipped_attributes:
                return
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in skipped_functions:
                return
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                visit(node.value)
                typed = type_of(node.value)
                if typed and typed[1] is not None:
                    env[node.targets[0].id] = ("instance", typed[1])
                return
            if isinstance(node, ast.Call):
                callee = type_of(node.func)
                # Building an SDK object runs its constructor (Sandbox may fetch its toolbox URL).
                if callee and callee[0] == "class" and callee[1] in self.classes and callee[1] is not sdk.cls:
                    self.visit_method(self.classes[callee[1]], "__init__", findings, depth + 1, True, stack)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                self.attribute(node, type_of, sdk, findings, depth, other_object, stack, ws, rewrites)
            for child in ast.iter_child_nodes(node):
                visit(child)

        for statement in function.body:
            visit(statement)

    def attribute(self, node, type_of, sdk, findings, depth, other_object, stack, ws, rewrites):
        owner = type_of(node.value)
        if owner is None or owner[1] is None:
            return
        cls = owner[1]
        if cls in self.operations:
            serialize = re.fullmatch(r"_(\w+)_serialize", node.attr)
            operation = self.operations[cls].get(serialize.group(1) if serialize else node.attr)
            if operation is None:
                return
            query = self.literal_query(node, operation)
            if serialize:
                path = next((new for pattern, new in rewrites if pattern.fullmatch(operation.path)), None)
                route = Route(operation, ws=ws, path=path, query=query, via="raw")
            else:
                route = Route(operation, query=query)
            self.order += 1
            findings.append(Finding(route, other_object, depth, self.order))
        elif cls in self.classes:
            is_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            self.visit_method(self.classes[cls], node.attr, findings, depth + 1, other_object or not is_self, stack)

    @staticmethod
    def literal_query(node, operation):
        """Query parameters the SDK passes as literals (`follow=True`): part of what it asks for."""
        call = getattr(node, "parent_call", None)
        query = {}
        for keyword in call.keywords if call else []:
            wire = operation.query_params.get(keyword.arg)
            if wire and isinstance(keyword.value, ast.Constant) and keyword.value.value is not None:
                value = keyword.value.value
                query[wire] = str(value).lower() if isinstance(value, bool) else str(value)
        return query

    @staticmethod
    def uses_websocket(function):
        """True when the function turns a serialized URL into a WebSocket one or opens one."""
        for node in ast.walk(function):
            if isinstance(node, ast.Constant) and node.value in ("ws", "wss"):
                return True
            if isinstance(node, ast.Attribute) and node.attr == "connect_ws":
                return True
        return False

    @staticmethod
    def path_rewrites(function):
        """`url.replace("/a/{x}/b", "/c")` pairs: the route the rewritten URL names."""
        rewrites = []
        for node in ast.walk(function):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace"
                    and len(node.args) == 2 and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)):
                old, new = (a.value for a in node.args)
                if PATH_LITERAL.match(old) and PATH_LITERAL.match(new):
                    # The SDK serializes with a placeholder; match it against the template's {params}.
                    parts = [r"(?:\{\w+\}|" + re.escape(p) + r")" for p in old.split("/")]
                    rewrites.append((re.compile("/".join(parts)), new))
        return rewrites

    @staticmethod
    def stored_callbacks(function, module):
        """Nested functions and bound methods handed to a constructor (PtyHandle's resize and kill
        handlers, Sandbox's analytics URL provider): they run later, as that object's methods, so
        their calls are not this method's. Returns (function names, attribute nodes)."""
        names, attributes = set(), set()
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and inspect.isclass(annotation_class(node.func, module)):
                for argument in list(node.args) + [k.value for k in node.keywords]:
                    if isinstance(argument, ast.Name):
                        names.add(argument.id)
                    elif isinstance(argument, ast.Attribute):
                        attributes.add(argument)
        return names, attributes

    def literal_routes(self, function):
        """URL paths written out in a method that talks HTTP without a generated client."""
        names = {n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)} | {
            n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
        if not names & HTTP_CLIENT_HINTS:
            return []
        ws = self.uses_websocket(function)
        findings = []
        for node in ast.walk(function):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and PATH_LITERAL.match(node.value):
                route = Route(None, ws=ws, path=node.value, via="literal")
                findings.append(Finding(route, False, 0, len(findings)))
        return findings


def link_calls(tree):
    """Lets an attribute find the call it is the callee of (for literal keyword arguments)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node.func.parent_call = node


def access_paths(classes):
    """How a user reaches each class: `sandbox.fs`, `daytona.snapshot`, `sandbox.create_lsp_server(…)`."""
    by_name = {c.__name__: c for c in classes}
    paths = {by_name[name]: path for name, path in ROOTS.items() if name in by_name}
    queue = list(paths)
    while queue:
        cls = queue.pop(0)
        sdk = classes[cls]
        reachable = [(attr, held, f"{paths[cls]}.{attr}") for attr, held in sdk.attributes.items()]
        reachable += [(name, returned, f"{paths[cls]}.{name}(…)") for name, returned in sdk.returns.items()]
        for name, held, path in reachable:
            if not name.startswith("_") and held in classes and held not in paths:
                paths[held] = path
                queue.append(held)
    return paths


def discover():
    """[(call, SdkClass, method, [Route])] for every public method that reaches a route."""
    operations = index_generated_clients()
    classes = load_sdk_classes()
    for sdk in classes.values():
        link_calls(sdk.node)
    analyzer = Analyzer(classes, operations)
    paths = access_paths(classes)
    calls = []
    # Daytona's calls first, then Sandbox's, then the objects they hold, nearest first.
    for cls in sorted(classes, key=lambda c: list(paths).index(c) if c in paths else len(paths)):
        sdk = classes[cls]
        if cls.__name__.startswith("_"):
            continue
        for name in sdk.methods:
            if name.startswith("_"):
                continue
            routes = analyzer.routes_of(sdk, name)
            if routes:
                calls.append((f"{paths.get(cls, cls.__name__)}.{name}", sdk, name, routes))
    return calls


# ---------------------------------------------------------------------------------------------
# Probing atolld.


def parameter_kind(operation, python_name):
    """bool, number or str: what the generated method declares for a path parameter."""
    function = getattr(operation.api_class, operation.name)
    annotation = inspect.signature(function).parameters[python_name].annotation
    found = set()

    def walk(t):
        if t in (bool, int, float, str):
            found.add(t)
        for argument in typing.get_args(t):
            walk(argument)

    walk(annotation)
    return "bool" if bool in found else "number" if found & {int, float} else "str"


def probe_path(route):
    """The route's path with its parameters filled with values that name nothing."""
    def fill(match):
        wire = match.group(1)
        python_name = route.operation.path_params.get(wire) if route.operation else None
        kind = parameter_kind(route.operation, python_name) if python_name else "str"
        if kind == "bool":
            return "true"
        if kind == "number":
            return "3000"
        return PROBE_SANDBOX if "sandbox" in wire.lower() else "coverage-probe"

    path = re.sub(r"\{(\w+)\}", fill, route.path)
    if route.base == "toolbox":
        path = f"/toolbox/{PROBE_SANDBOX}{path}"
    elif route.base == "api":
        path = "/api" + path
    if route.query:
        path += "?" + urllib.parse.urlencode(route.query)
    return path


class Probe:
    def __init__(self, base_url, key):
        parsed = urllib.parse.urlsplit(base_url)
        self.scheme, self.host, self.port = parsed.scheme, parsed.hostname, parsed.port
        self.prefix = parsed.path.rstrip("/")
        self.key = key

    def __call__(self, route):
        """"served", "not served" or "external", with the status and message seen."""
        if route.base == "analytics":
            return {"verdict": "external", "status": None, "message": "separate analytics service, not probed"}
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        body = None
        if route.ws:
            headers.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
        elif route.http_method in ("POST", "PUT", "PATCH", "DELETE"):
            # `{}`, except on API routes where no path parameter names an existing thing: there
            # `{}` could be a valid create (POST /sandbox would start one); a JSON array is no
            # create's body. Toolbox routes all name the (missing) sandbox.
            creates = route.base == "api" and "{" not in route.path and route.http_method != "DELETE"
            body = b"[]" if creates else b"{}"
            headers["Content-Type"] = "application/json"
        connection_class = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self.host, self.port, timeout=30)
        try:
            connection.request(route.http_method, self.prefix + probe_path(route), body=body, headers=headers)
            response = connection.getresponse()
            status = response.status
            payload = b"" if status == 101 else response.read(64 << 10)
            if status == 101:
                # atolld accepts a WebSocket it does not serve only to close it with 4501.
                frame = response.fp.read(4)
                if len(frame) == 4 and frame[0] & 0x0F == 0x8 and int.from_bytes(frame[2:4], "big") == 4501:
                    return {"verdict": "not served", "status": 101, "message": "closed with 4501 (not implemented)"}
        finally:
            connection.close()
        if status == 401:
            raise SystemExit(f"sdk-coverage: atolld refused the API key (401) on {route.display()}")
        try:
            message = json.loads(payload).get("message") if payload else None
        except (ValueError, AttributeError):
            message = payload[:200].decode(errors="replace")
        message = message if isinstance(message, str) else None
        unmatched = status == 501 or (status in (404, 405) and message in (None, "Not Found"))
        # A WebSocket is served only if the upgrade happens (a declined one is an empty 400).
        if route.ws and status != 101:
            unmatched = True
        return {"verdict": "not served" if unmatched else "served", "status": status, "message": message}


def shadows(rows):
    """{route key: template} for routes with a literal segment where another SDK route of the
    same shape has a parameter (GET /process/session/entrypoint, /process/session/{sessionId}):
    atolld may answer the first with its handler for the second, and with a sandbox that does
    not exist the probe cannot tell the two apart."""
    templates = {(r.base, r.http_method, r.path) for *_, routes in rows for r in routes}
    found = {}
    for *_, routes in rows:
        for route in routes:
            mine = route.path.split("/")
            for base, method, path in templates:
                theirs = path.split("/")
                if (base, method) != (route.base, route.http_method) or len(theirs) != len(mine) or path == route.path:
                    continue
                pairs = list(zip(mine, theirs))
                covered = all(a == b or b.startswith("{") for a, b in pairs)
                if covered and any(not a.startswith("{") and b.startswith("{") for a, b in pairs):
                    found[route.key] = path
    return found


def verdict(routes):
    """yes / partly / no for a method, from its primary route and the others."""
    probed = [r for r in routes if r.result and r.result["verdict"] != "external"]
    if not probed or probed[0].result["verdict"] != "served":
        return "no"
    return "yes" if all(r.result["verdict"] == "served" for r in probed) else "partly"


# ---------------------------------------------------------------------------------------------
# Output.


def print_table(rows):
    width = max(len(call) for call, *_ in rows)
    route_width = max(len(r.display()) for *_, routes in rows for r in routes)
    print(f"{'SDK call':<{width}}  {'atolld':<7} {'HTTP call':<{route_width}}  route")
    for call, _, _, routes in rows:
        for i, route in enumerate(routes):
            name, status = (call, routes.verdict) if i == 0 else ("", "")
            seen = route.result["verdict"] if route.result else "-"
            if route.result and route.result["status"]:
                seen += f" ({route.result['status']})"
            print(f"{name:<{width}}  {status:<7} {route.display():<{route_width}}  {seen}")


def print_markdown(rows):
    marks = {"served": "✅", "not served": "❌", "external": "↗️"}
    print("| SDK call | atolld | HTTP calls (primary first) |")
    print("|---|---|---|")
    for call, _, _, routes in rows:
        cells = []
        for route in routes:
            mark = marks.get(route.result["verdict"], "") + " " if route.result else ""
            cells.append(f"{mark}`{route.display(aligned=False)}`".replace("|", "\\|"))
        print(f"| `{call}` | {routes.verdict} | {'<br>'.join(cells)} |")


class Routes(list):
    """A method's routes, primary first, and its verdict once probed."""

    verdict = "-"


def main():
    parser = argparse.ArgumentParser(description="Which Daytona SDK calls atolld serves.")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="a markdown table")
    output.add_argument("--json", action="store_true", help="JSON")
    parser.add_argument("--no-probe", action="store_true", help="list calls and routes only; no daemon")
    args = parser.parse_args()

    rows = [(call, sdk, name, Routes(routes)) for call, sdk, name, routes in discover()]
    if not args.no_probe:
        api_url, key = os.environ.get("DAYTONA_API_URL"), os.environ.get("DAYTONA_API_KEY")
        if not (api_url and key):
            raise SystemExit("sdk-coverage: set DAYTONA_API_URL and DAYTONA_API_KEY (or run scripts/sdk-coverage)")
        probe = Probe(re.sub(r"/api/?$", "", api_url.rstrip("/")), key)
        seen = {}
        for *_, routes in rows:
            for route in routes:
                if route.key not in seen:
                    seen[route.key] = probe(route)
                route.result = seen[route.key]
            routes.verdict = verdict(routes)

    served = sum(routes.verdict in ("yes", "partly") for *_, routes in rows)
    partly = [call for call, *_, routes in rows if routes.verdict == "partly"]
    version = importlib.metadata.version("daytona")
    count = f"atolld serves {served} of {len(rows)} SDK calls"
    shadowed = shadows(rows)
    if args.json:
        print(json.dumps({
            "sdkVersion": version,
            "calls": [{
                "call": call, "class": f"{sdk.cls.__module__}.{sdk.name}", "method": name, "atolld": routes.verdict,
                "routes": [{
                    "base": r.base, "method": r.http_method, "path": r.path, "query": r.query, "websocket": r.ws, "via": r.via,
                    "generated": r.operation.label if r.operation else None, "mayBeShadowedBy": shadowed.get(r.key),
                    **({"probe": r.result} if r.result else {}),
                } for r in routes],
            } for call, sdk, name, routes in rows],
            "total": len(rows), "served": None if args.no_probe else served, "partly": None if args.no_probe else len(partly),
        }, indent=2))
        return
    if args.markdown:
        print_markdown(rows)
    else:
        print_table(rows)
    print()
    if args.no_probe:
        print(f"daytona {version}: {len(rows)} SDK calls make HTTP calls (not probed)")
        return
    if partly:
        print(f"counted as served but partly: {', '.join(partly)} (a secondary route, for an optional "
              "feature or a follow-up, is not served)")
    for call, *_, routes in rows:
        for route in routes:
            if route.key in shadowed and route.result["verdict"] == "served":
                print(f"unsure: {call}: {route.display(aligned=False)} may be answered by the handler of "
                      f"{shadowed[route.key]}; the probe cannot tell")
    print(count)


if __name__ == "__main__":
    main()
