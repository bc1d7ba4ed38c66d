package app

import (
	"fmt"
	"net/http"
	"net/url"
	"unicode"
)

// sessionCookie holds the signed-in user's name. Like Istio's sample it is
// a demo, not authentication: the password is never checked, and the name
// only becomes the end-user header the mesh routes on.
const sessionCookie = "session"

// maxUserName bounds the name kept in the cookie and sent as a header.
const maxUserName = 64

// validUserName reports why name cannot be a user, or nil.
func validUserName(name string) error {
	if name == "" {
		return fmt.Errorf("form field %q is required", "username")
	}
	if len(name) > maxUserName {
		return fmt.Errorf("form field %q is longer than %d bytes", "username", maxUserName)
	}
	for _, c := range name {
		// It travels as an HTTP header value: no control characters.
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return fmt.Errorf("form field %q contains a control or invalid character", "username")
		}
	}
	return nil
}

// sessionUser returns the signed-in user, or "" when there is none or the
// cookie does not hold a valid name.
func sessionUser(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	name, err := url.QueryUnescape(c.Value)
	if err != nil || validUserName(name) != nil {
		return ""
	}
	return name
}

// serveLogin signs the user in (any password) and goes back to the page.
func (p *productPage) serveLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "login: cannot read the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	user := r.PostForm.Get("username")
	if err := validUserName(user); err != nil {
		http.Error(w, "login: "+err.Error(), http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    url.QueryEscape(user),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	p.logger.Info("user signed in", "user", user)
	http.Redirect(w, r, "/productpage", http.StatusFound)
}

// serveLogout forgets the user and goes back to the page.
func (p *productPage) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/productpage", http.StatusFound)
}
