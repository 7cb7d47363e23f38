//! `annals-schemas`: the event types of the message-log and audit families and their JSON
//! Schemas. Empty until issue 3 lands them; it exists now so the workspace has its final shape.
