package bridge

import (
	"context"
	"net/http"

	"github.com/narrated/llmworker/internal/openai"
)

// poolFor finds the pool whose workers serve model.
// TODO(discovery): learn the models from the live workers.
func (s *Server) poolFor(ctx context.Context, model string) (string, *openai.Error) {
	return "", nil
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openai.ModelList{Object: openai.ObjectList, Data: []openai.Model{}})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	writeOpenAIError(w, openai.NewError(http.StatusNotFound, openai.TypeInvalidRequest, "model_not_found", "model", "no live worker serves this model"))
}
