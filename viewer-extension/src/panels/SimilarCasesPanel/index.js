export { default as WrappedSimilarCasesPanel } from './WrappedSimilarCasesPanel.jsx';
export { default as SimilarCasesView } from './SimilarCasesView.jsx';
