/** Node ids (docs/ARCHITECTURE.md, "Node naming"): "service:operation", "net:callee_service:callee_operation". */
export function splitNodeId(node: string): { service: string; operation: string } {
  const parts = node.split(':');
  if (parts[0] === 'net' && parts.length >= 3) {
    return { service: parts[1], operation: parts.slice(2).join(':') };
  }
  return parts.length >= 2 ? { service: parts[0], operation: parts.slice(1).join(':') } : { service: node, operation: '' };
}
