package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Client is what a report platform's calls go through: its environment,
// the report API with a bearer token from Token (fetched again on a 401),
// and the token cache. A platform embeds it, built by NewClient, and makes
// its calls with its methods: the steps every report API shares (a token
// grant, create, status, download) are written here once.
type Client struct {
	Env   Env
	API   *API
	Token *TokenCache
}

// NewClient returns the Client of env (its defaults filled in). fetch gets
// a new token (through FetchToken, usually); message reads the API's error
// text from an error answer; notReady (nil: never) says which error
// answers mean "not ready yet".
func NewClient(env Env, fetch func(context.Context) (string, time.Time, error), message func([]byte) string, notReady func(int, string) bool) Client {
	env = env.WithDefaults()
	tok := &TokenCache{Fetch: fetch, Now: env.Now}
	return Client{Env: env, Token: tok, API: &API{HTTP: env.HTTP, Auth: tok, Retry: env.Retry, Message: message, NotReady: notReady, Log: env.Log}}
}

// Tokens counts the access tokens fetched.
func (c *Client) Tokens() int { return c.Token.Fetches() }

// FetchToken sends a token request (without a bearer token, and without
// "not ready" answers) and decodes its JSON answer into out. An answer that
// is not JSON is refused for good, naming rq.Op.
func (c *Client) FetchToken(ctx context.Context, rq Request, out any) error {
	api := &API{HTTP: c.API.HTTP, Retry: c.API.Retry, Message: c.API.Message, Log: c.API.Log}
	resp, err := api.Do(ctx, rq)
	if err != nil {
		return err
	}
	if err := decodeJSON(resp, 1<<20, out); err != nil {
		return Permanent(fmt.Errorf("%s: the answer is not JSON", rq.Op))
	}
	return nil
}

// CreateReport sends the request that creates a report and returns the id
// its JSON answer holds ({"id": ...}). An answer without one is refused
// for good, naming rq.Op.
func (c *Client) CreateReport(ctx context.Context, rq Request) (string, error) {
	resp, err := c.API.Do(ctx, rq)
	if err != nil {
		return "", err
	}
	var obj struct {
		ID string `json:"id"`
	}
	if err := decodeJSON(resp, 1<<20, &obj); err != nil || obj.ID == "" {
		return "", Permanent(fmt.Errorf("%s: the answer holds no report id", rq.Op))
	}
	return obj.ID, nil
}

// ReportJSON sends a request about a report (its status) and decodes the
// JSON answer, at most limit bytes, into out. A 404 says the report is gone
// (ErrReportGone): it is requested again.
func (c *Client) ReportJSON(ctx context.Context, rq Request, limit int64, out any) error {
	resp, err := c.report(ctx, rq)
	if err != nil {
		return err
	}
	if err := decodeJSON(resp, limit, out); err != nil {
		return fmt.Errorf("%s: %w", rq.Op, err)
	}
	return nil
}

// Download sends the request for a report's file and hands its body to
// parse. A 404 says the report is gone (ErrReportGone): it is requested
// again.
func (c *Client) Download(ctx context.Context, rq Request, parse func(io.Reader) (FetchInfo, error)) (FetchInfo, error) {
	resp, err := c.report(ctx, rq)
	if err != nil {
		return FetchInfo{}, err
	}
	defer resp.Body.Close()
	return parse(resp.Body)
}

// report sends rq, a request about a report: a 404 says the report is
// gone (ErrReportGone).
func (c *Client) report(ctx context.Context, rq Request) (*http.Response, error) {
	resp, err := c.API.Do(ctx, rq)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil, fmt.Errorf("%w: %v", ErrReportGone, err)
		}
		return nil, err
	}
	return resp, nil
}

// decodeJSON decodes resp's body, at most limit bytes, into out, and
// closes it.
func decodeJSON(resp *http.Response, limit int64, out any) error {
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(out)
}

// CheckURL refuses s unless it is an http(s) URL with a host and without
// credentials (a platform's base_url or token_url setting).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an http(s) URL without credentials", s)
	}
	return nil
}
