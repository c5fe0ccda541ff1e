const ws = new WebSocket("ws://127.0.0.1:46190"); await new Promise((r) => ws.onopen = r);
console.log("client close:", await new Promise((r) => ws.onclose = (e) => r(`${e.code} ${e.reason}`)));
