package demo

import (
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Limits of the examples' HTTP servers. Slow clients are the host server's
// to defend against: the scheduler's handler cannot.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// ServerDrainTimeout bounds how long an example's server finishes the
// requests in progress when it shuts down.
const ServerDrainTimeout = 10 * time.Second

// NewServer returns an HTTP server for h with the examples' timeouts,
// logging its errors to log.
func NewServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          zap.NewStdLog(log),
	}
}

// NewLogger returns a logger writing to w at info level, or debug level
// if debug is set: JSON lines if jsonLines is set, else readable text.
func NewLogger(w io.Writer, debug, jsonLines bool) *zap.Logger {
	level := zapcore.InfoLevel
	if debug {
		level = zapcore.DebugLevel
	}
	var enc zapcore.Encoder
	if jsonLines {
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	} else {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}
