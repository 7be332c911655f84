// The page at /examples/stock-manager.html: seed 000's `StockManager` class, copied
// character for character from seed 000 ("Cliente Web Completo"), running against this
// server (hub or edge). Everything below the class is this page's own code: it finds a
// token, shows the stock once over REST, and instantiates the class with a WebSocket URL
// that carries the token (seed 000's `?token=`, docs/protocol.md §2.1).
//
// What a seed 000 client notices here (docs/protocol.md): it must authenticate (the
// `?token=` below), and it gets an `ack` instead of the event for its own commands, which
// its handleMessage ignores (no `event` key): so after the "over the WebSocket" button the
// page reads the level again over REST. Changes made anywhere else arrive as events and
// the class updates the cells itself.

class StockManager {
  constructor(wsUrl) {
    this.ws = new WebSocket(wsUrl);
    this.setupListeners();
  }
  
  setupListeners() {
    this.ws.onopen = () => {
      console.log('✅ Conectado al servidor de stock');
      this.subscribeToUpdates();
    };
    
    this.ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      this.handleMessage(message);
    };
    
    this.ws.onerror = (error) => {
      console.error('❌ Error en WebSocket:', error);
      this.reconnect();
    };
    
    this.ws.onclose = () => {
      console.log('🔌 Desconectado. Intentando reconectar...');
      this.reconnect();
    };
  }
  
  handleMessage(message) {
    switch(message.event) {
      case 'stock:update':
        this.updateStockInUI(message.data);
        break;
      case 'stock:add':
        this.incrementStockInUI(message.data);
        break;
      case 'stock:subtract':
        this.decrementStockInUI(message.data);
        break;
      case 'stock:sync':
        this.syncAllStockInUI(message.data);
        break;
      case 'stock:error':
        this.showError(message.data);
        break;
    }
  }
  
  // Actualizar stock
  updateStock(productId, newStock) {
    this.ws.send(JSON.stringify({
      event: 'stock:update',
      data: [{ productId, stock: newStock }]
    }));
  }
  
  // Añadir stock
  addStock(productId, quantity) {
    this.ws.send(JSON.stringify({
      event: 'stock:add',
      data: [{ productId, quantity }]
    }));
  }
  
  // Restar stock
  subtractStock(productId, quantity) {
    this.ws.send(JSON.stringify({
      event: 'stock:subtract',
      data: [{ productId, quantity }]
    }));
  }
  
  // Métodos de UI (implementar según framework)
  updateStockInUI(data) {
    data.forEach(({ productId, stock }) => {
      const element = document.querySelector(`[data-product="${productId}"]`);
      if (element) {
        element.textContent = stock;
        element.classList.add('updated');
      }
    });
  }
  
  incrementStockInUI(data) {
    data.forEach(({ productId, quantity }) => {
      const element = document.querySelector(`[data-product="${productId}"]`);
      if (element) {
        const current = parseInt(element.textContent) || 0;
        element.textContent = current + quantity;
      }
    });
  }
  
  decrementStockInUI(data) {
    data.forEach(({ productId, quantity }) => {
      const element = document.querySelector(`[data-product="${productId}"]`);
      if (element) {
        const current = parseInt(element.textContent) || 0;
        element.textContent = Math.max(0, current - quantity);
      }
    });
  }
  
  syncAllStockInUI(data) {
    data.forEach(({ productId, stock }) => {
      this.updateStockInUI([{ productId, stock }]);
    });
  }
  
  showError(error) {
    console.error(`Error de stock: ${error.reason}`);
    // Mostrar notificación al usuario
  }
  
  reconnect() {
    setTimeout(() => {
      this.ws = new WebSocket(this.ws.url);
      this.setupListeners();
    }, 3000);
  }
}

// ---------------------------------------------------------------- this page's own code

// Seed 000's class calls `this.subscribeToUpdates()` when the socket opens but never defines
// it. Nothing needs subscribing here (the server sends a connection every event its token
// may see), so it is supplied as a no-op from outside the class, which stays verbatim.
if (typeof StockManager.prototype.subscribeToUpdates !== 'function') {
  StockManager.prototype.subscribeToUpdates = function subscribeToUpdates() {};
}

/** The access token: `?token=` on this page's URL, else what the back-office or register
 *  pages keep after a sign-in (localStorage). */
function findToken() {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) return fromUrl;
  for (const key of ['stocky.accessToken', 'stocky.token', 'stocky.session', 'stocky:session']) {
    let value = null;
    try {
      value = localStorage.getItem(key);
    } catch {
      return null;
    }
    if (!value) continue;
    try {
      const parsed = JSON.parse(value);
      if (parsed && typeof parsed === 'object' && parsed.accessToken) return parsed.accessToken;
      if (typeof parsed === 'string') return parsed;
    } catch {
      return value;
    }
  }
  return null;
}

const statusEl = document.querySelector('#status');
const token = findToken();

function api(path, body) {
  return fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (r) => {
    const json = await r.json().catch(() => null);
    if (!r.ok) throw new Error(json?.error?.message || `${r.status}`);
    return json;
  });
}

/** Fills every [data-product] cell from GET /api/stock (once at start, and after own sends). */
async function showStock() {
  const { data } = await api('/api/stock');
  const levels = new Map(data.map((row) => [String(row.productId), row.stock]));
  for (const cell of document.querySelectorAll('[data-product]')) {
    cell.textContent = levels.has(cell.dataset.product) ? levels.get(cell.dataset.product) : 0;
  }
}

function showStatus(text, kind) {
  if (statusEl.textContent === text) return;
  statusEl.textContent = text;
  statusEl.className = `pill ${kind}`; // ok | warn | bad (the shared look's pills)
}

if (!token) {
  showStatus('No token: open this page as /examples/stock-manager.html?token=… or sign in on this server first.', 'bad');
} else {
  await showStock().catch((e) => showStatus(`GET /api/stock failed: ${e.message}`, 'bad'));

  const stockManager = new StockManager(
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?token=${encodeURIComponent(token)}`,
  );
  window.stockManager = stockManager;

  // The class keeps its socket in `ws` (a new one after each reconnect): show its state.
  const states = ['connecting…', 'connected', 'closing…', 'disconnected, reconnecting in 3 s…'];
  setInterval(() => {
    const state = stockManager.ws.readyState;
    showStatus(`WebSocket ${states[state]}`, state === 1 ? 'ok' : 'warn');
  }, 250);

  // Seed 000's own usage: update a level from a button, over the WebSocket.
  document.querySelector('#update-btn').addEventListener('click', () => {
    stockManager.updateStock(1, 100);
    setTimeout(() => showStock().catch(() => {}), 500); // our own change comes back as an ack
  });

  // Changes over REST come back to this page as events, which the class applies.
  for (const button of document.querySelectorAll('[data-add]')) {
    button.addEventListener('click', () => {
      api('/api/stock/add', { additions: [{ productId: Number(button.dataset.add), quantity: 10 }] }).catch((e) =>
        showStatus(`POST /api/stock/add failed: ${e.message}`, 'bad'),
      );
    });
  }
}
