"""The one send path: responses queued, rendered, composed and sent."""
