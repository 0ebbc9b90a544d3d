package relay

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed chat/index.html
var chatFiles embed.FS

// chatHandler serves the demo page /chat/ (plain HTML and JavaScript).
func chatHandler() http.Handler {
	sub, _ := fs.Sub(chatFiles, "chat")
	return http.StripPrefix("/chat/", http.FileServer(http.FS(sub)))
}
