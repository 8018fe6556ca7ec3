/** A node id shown as "service operation", the service emphasised. */
import { css } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React from 'react';

import { splitNodeId } from '../nodes';

export const NodeName: React.FC<{ node?: string; service?: string; operation?: string }> = ({ node, service, operation }) => {
  const styles = useStyles2(getStyles);
  const parts = node ? splitNodeId(node) : { service: service ?? '', operation: operation ?? '' };
  return (
    <span title={node ?? `${parts.service}:${parts.operation}`}>
      <span className={styles.service}>{parts.service || '—'}</span>
      {parts.operation && <span className={styles.operation}> {parts.operation}</span>}
    </span>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  service: css({ fontWeight: theme.typography.fontWeightMedium, color: theme.colors.text.primary }),
  operation: css({ color: theme.colors.text.secondary }),
});
