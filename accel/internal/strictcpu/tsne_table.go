package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
)

// tsneTable maps the operations around a t-SNE run to their kernels.
func (b *Kernels) tsneTable() accel.Kernels {
	return accel.Kernels{
		accel.TSNEAffinities: func(ctx context.Context, c *accel.Call) error {
			return b.TSNEAffinities(ctx, c.Out[0], c.Out[1], c.Out[2], c.In[0], c.Params.(accel.TSNEAffinitiesParams))
		},
		accel.EmbeddingQuality: func(ctx context.Context, c *accel.Call) error {
			return b.EmbeddingQuality(ctx, c.Out[0], c.In[0], c.In[1], c.In[2], c.Params.(accel.EmbeddingQualityParams))
		},
	}
}
