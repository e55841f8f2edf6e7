//! import (being written).
