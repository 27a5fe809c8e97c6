package cloudcruiser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/workers"
)

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// answer is the API's reply, documented for success and 401:
// {"success": true, "message": "Completed upload of 34567 record(s)", "status": 200}.
type answer struct {
	Success *bool  `json:"success"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

// parseAnswer reads the reply. A body that is not the documented JSON
// keeps its text (clipped) as the message, and Success stays nil. The
// token is blanked should the API ever echo it.
func (d *Destination) parseAnswer(raw []byte) answer {
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		a = answer{}
		if utf8.Valid(raw) {
			a.Message = strings.TrimSpace(string(raw))
		}
	}
	// In any encoding the API might echo it (telemetry.Redactor).
	a.Message = telemetry.NewRedactor(d.token.Value()).String(a.Message)
	if len(a.Message) > 1024 {
		a.Message = strings.ToValidUTF8(a.Message[:1024], "") + "…"
	}
	return a
}

// failedWith200 is a 2xx whose body does not say success: nothing is known
// to be stored. The body's own status decides, as classify decides for an
// HTTP status: a 4xx there is the API answering about the file, so a
// body status of 400, 413 or 422 refuses the date (its records are
// dead-lettered with the message, like an HTTP 400), 401 or 403 pauses
// the destination, 408, 409, 423 and 429 are retried, and another 4xx
// pauses the destination as every date would meet it. No body status, or
// a 5xx, is transient: the date is sent again later.
func (a answer) failedWith200(date string, status int) error {
	msg := a.Message
	if a.Success == nil {
		msg = fmt.Sprintf("the answer is not the documented JSON with \"success\": %q", msg)
	}
	if a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden {
		return &workers.Error{Class: workers.ClassAuth, Status: a.Status, Message: msg}
	}
	if a.Success != nil && a.Status >= 400 && a.Status < 500 {
		return classify(date, a.Status, http.Header{}, fmt.Sprintf("%s (HTTP %d, \"success\": false)", msg, status))
	}
	return &workers.Error{Class: workers.ClassTransient, Status: status,
		Message: fmt.Sprintf("upload of %s answered HTTP %d without success (body status %d): %s", date, status, a.Status, msg)}
}

// classify turns a non-2xx answer into the job's outcome:
//
//	400, 413, 422        the date is refused: *refusedError
//	401, 403             ClassAuth: the pool pauses the destination
//	408, 409, 423, 429,
//	5xx                  ClassTransient, honouring Retry-After
//	other 4xx (404, 405, 411, 415, ...)
//	                     ClassAuth as well: every date would meet it (a
//	                     wrong base_url, a proxy), so the destination pauses
//	                     with its data kept rather than dead-letter it all
func classify(date string, status int, h http.Header, msg string) error {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		if msg == "" {
			msg = http.StatusText(status)
		}
		return &refusedError{date: date, status: status, msg: msg}
	case http.StatusConflict, http.StatusLocked:
		return &workers.Error{Class: workers.ClassTransient, Status: status, Message: msg, RetryAfter: workers.RetryAfter(h, time.Now())}
	case http.StatusLengthRequired:
		return &workers.Error{Class: workers.ClassAuth, Status: status, Message: "the server wants a Content-Length: set content_length: true (" + msg + ")"}
	}
	err := workers.Classify(status, h, msg)
	if we, ok := err.(*workers.Error); ok && we.Class != workers.ClassTransient && we.Class != workers.ClassAuth {
		return &workers.Error{Class: workers.ClassAuth, Status: status,
			Message: "every upload would meet this; check base_url and the endpoint: " + msg}
	}
	if err == nil { // a 1xx or 3xx the client did not follow
		return &workers.Error{Class: workers.ClassTransient, Status: status, Message: msg}
	}
	return err
}
