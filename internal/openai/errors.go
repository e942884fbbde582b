package openai

import "net/http"

// Error is an API error as OpenAI shapes it. Param names the request's
// parameter at fault, when there is one.
type Error struct {
	// Status is the HTTP status it is answered with.
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *Error) Error() string { return e.Message }

// ErrorBody is the JSON body of an error response, and the data of an
// error that ends a stream.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// The error types.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeTimeout        = "timeout_error"
)

// NewError builds an error; empty param and code are null.
func NewError(status int, typ, code, param, message string) *Error {
	e := &Error{Status: status, Type: typ, Message: message}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// BadParam is a 400 that names the parameter at fault.
func BadParam(param, message string) *Error {
	return NewError(http.StatusBadRequest, TypeInvalidRequest, "invalid_parameter", param, message)
}

// Unsupported is a 400 for a parameter this server does not offer.
func Unsupported(param, message string) *Error {
	return NewError(http.StatusBadRequest, TypeInvalidRequest, "unsupported_parameter", param, message)
}
