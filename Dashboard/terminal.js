// A terminal in the page over the PTY WebSocket (the SDK's create-connect): a real shell on a
// pseudo-terminal of the sandbox, rendered as a console. Debian 12's libjs-xterm (3.8.1) ships
// xterm.js as a CommonJS stub that requires files the package does not contain, so it cannot be
// loaded in a browser; this console strips escape sequences and applies carriage returns and
// backspaces, and sends a line (or Ctrl-C, Ctrl-D, Tab) at a time.

import { api, escapeHTML, socket } from "./api.js";

const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHMZ]/g;

export class Console {
  constructor(container, sandboxId) {
    this.sandboxId = sandboxId;
    this.sessionId = `dashboard-${Math.random().toString(36).slice(2, 10)}`;
    container.innerHTML = `<div class="terminal" role="region" aria-label="Terminal">
  <pre id="term-out" aria-live="polite"></pre></div>
<form class="toolbar" id="term-form">
  <div style="flex:1"><label for="term-in">Command</label><input id="term-in" autocomplete="off" spellcheck="false" placeholder="type a command and press Enter"></div>
  <button type="submit" class="primary">Send</button>
  <button type="button" data-key="\u0003" title="Interrupt (Ctrl-C)">Ctrl-C</button>
  <button type="button" data-key="\u0004" title="End of input (Ctrl-D)">Ctrl-D</button>
  <button type="button" data-key="\t" title="Complete (Tab)">Tab</button>
</form>
<p class="hint" id="term-status">Connecting…</p>`;
    this.out = container.querySelector("#term-out");
    this.status = container.querySelector("#term-status");
    this.input = container.querySelector("#term-in");
    this.text = "";
    this.decoder = new TextDecoder();
    container.querySelector("#term-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send(this.input.value + "\n");
      this.input.value = "";
    });
    container.querySelectorAll("button[data-key]").forEach((b) => b.addEventListener("click", () => {
      this.send(b.dataset.key === "\t" ? this.input.value + "\t" : b.dataset.key);
      if (b.dataset.key === "\t") this.input.value = "";
      this.input.focus();
    }));
    const columns = Math.max(40, Math.min(200, Math.floor(container.clientWidth / 8) || 100));
    this.ws = socket(`/toolbox/${encodeURIComponent(sandboxId)}/process/pty/create-connect?id=${this.sessionId}&cols=${columns}&rows=30`,
      ["X-Daytona-Pty-Exit-Control"]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onclose = (event) => {
      let reason = event.reason;
      try { const data = JSON.parse(reason); reason = `exit code ${data.exitCode}`; } catch { /* plain text */ }
      this.status.textContent = `Disconnected${reason ? `: ${reason}` : ""}.`;
    };
  }

  receive(data) {
    if (typeof data === "string") {
      try {
        const control = JSON.parse(data);
        if (control.type === "control") {
          if (control.status === "connected") { this.status.textContent = "Connected: a login shell on a terminal of the sandbox."; this.input.focus(); }
          if (control.status === "exited") this.status.textContent = `The shell exited with code ${control.exitCode}.`;
          if (control.status === "error") this.status.textContent = `Error: ${control.error}`;
          return;
        }
      } catch { /* output */ }
      this.append(data);
    } else {
      this.append(this.decoder.decode(data, { stream: true }));
    }
  }

  append(chunk) {
    let text = this.text;
    for (const ch of chunk.replace(ESCAPES, "").replace(/\r\n/g, "\n")) {
      if (ch === "\b") text = text.slice(0, -1);
      else if (ch === "\r") text = text.slice(0, text.lastIndexOf("\n") + 1);
      else if (ch === "\x07") continue;
      else text += ch;
    }
    this.text = text.length > 200000 ? text.slice(-150000) : text;
    this.out.innerHTML = escapeHTML(this.text);
    this.out.parentElement.scrollTop = this.out.parentElement.scrollHeight;
  }

  send(data) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(new TextEncoder().encode(data));
  }

  /** Ends the shell and forgets the session. */
  async close() {
    try { this.ws.close(); } catch { /* closed */ }
    try { await api("DELETE", `/toolbox/${encodeURIComponent(this.sandboxId)}/process/pty/${this.sessionId}`); } catch { /* gone */ }
  }
}
