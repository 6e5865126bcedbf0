//! Hot-path parsers for WebSocket frames: market streams and user-data events.
