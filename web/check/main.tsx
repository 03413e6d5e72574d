import { createRoot } from 'react-dom/client';
import { CheckApp } from './check-app.js';
import '../style.css';

const root = document.getElementById('root');
if (root === null) throw new Error('#root is missing');
createRoot(root).render(<CheckApp />);
