//! Non-blocking WebSocket client (being built).
